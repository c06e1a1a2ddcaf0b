"""The search simulator of benchmarks/simulate_search.py on a small hand-made curve table: its
compute and regret accounting, and the scheduler it drives."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import optuna
import pytest

from benchmarks.record_curves import enumerate_points
from benchmarks.simulate_search import DEFAULT_SPEC, CurveTable, Method, simulate
from dynsweep.sweep.config import load_config
from dynsweep.sweep.moasha import RungSchedule, audit
from dynsweep.sweep.record import TrialRecord

EPOCHS = 9
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def config():
    return load_config(DEFAULT_SPEC)


@pytest.fixture(scope="module")
def table(config, tmp_path_factory) -> CurveTable:
    """Every quickstart point with two seeds of made-up curves; point i trains i + 1 seconds an
    epoch; the six with all stages dynamic and two bases cannot be built."""
    rng = np.random.default_rng(0)
    points = {}
    for i, point in enumerate(enumerate_points(config)):
        final = rng.uniform(0.6, 0.95)
        runs = {
            str(seed): {
                "val_acc1": (
                    0.1 + (final - 0.1) * (1 - np.exp(-np.arange(1, EPOCHS + 1) / rng.uniform(1, 4)))
                ).tolist(),
                "epoch_seconds": [float(i + 1)] * EPOCHS,
            }
            for seed in range(2)
        }
        points[point["key"]] = {**point, "macs": 1e6 * (1 + (i * 7) % 36), "params": 1, "runs": runs}
        if 'stages="all"|num_bases=2' in point["key"]:  # as reduction 8 at width 0.125: cannot be built
            points[point["key"]] = {**point, "error": "ValueError: cannot be built"}
    path = tmp_path_factory.mktemp("curves") / "table.json"
    path.write_text(json.dumps({"setup": {}, "recording_seconds": 0.0, "points": points}))
    return CurveTable.load(path)


def test_the_true_front_has_no_regret_and_nothing_has_all_of_it(table):
    assert table.regret(frozenset(range(len(table.points)))) == pytest.approx(0.0, abs=1e-12)
    assert table.regret(frozenset()) == 1.0
    # The reference point is the worst accuracy and the highest MACs: the worst point adds nothing.
    worst = int(np.argmin([p.value for p in table.points]))
    assert table.hypervolume([worst]) == 0.0


def test_full_training_computes_every_epoch_of_every_trained_trial(table, config):
    run = simulate(
        table, config, Method("random", lambda s: optuna.samplers.RandomSampler(seed=s), n_trials=12), 0, workers=3
    )
    trained = [
        t
        for t in run.study.trials
        if t.state == optuna.trial.TrialState.COMPLETE and TrialRecord.of(t).duplicate_of is None
    ]
    assert run.trials == 12 and run.reused + run.infeasible + len(trained) == 12 and run.pruned == 0
    seconds = sum(EPOCHS * table.points[table.by_id[_point_id(t)]].epoch_seconds for t in trained)
    assert run.total_compute == pytest.approx(seconds)
    assert run.compute[-1] == pytest.approx(seconds)  # with full training the last finish ends everything


def _point_id(trial) -> str:
    from benchmarks.simulate_search import point_id

    params = TrialRecord.of(trial).child_params
    return point_id(params["model"], params["preset"], params["spec"])


def test_a_point_that_cannot_be_built_is_infeasible_at_no_compute(table, config):
    """As the sweep tells it: PRUNED with its reason, never trained, and never proposed again."""
    run = simulate(table, config, Method("random", lambda s: optuna.samplers.RandomSampler(seed=s), n_trials=30), 0)
    records = [TrialRecord.of(t) for t in run.study.trials if TrialRecord.of(t).infeasible]
    assert len(table.infeasible) == 6 and len(records) > 0
    assert all(r.infeasible == "ValueError: cannot be built" and not r.curve for r in records)
    assert len({r.point for r in records}) == len(records)  # each unbuildable point told once


def test_compute_does_not_depend_on_the_number_of_workers_when_nothing_stops(table, config):
    """Without reuse (a twin still running is trained again, so reuse depends on timing), the same
    proposals train the same epochs whatever the number of workers."""
    method = Method("random", lambda s: optuna.samplers.RandomSampler(seed=s), n_trials=10)
    config = dataclasses.replace(config, budget=dataclasses.replace(config.budget, reuse_duplicates=False))
    one, four = (simulate(table, config, method, 1, workers=w) for w in (1, 4))
    assert one.total_compute == pytest.approx(four.total_compute)
    assert max(four.wall) < max(one.wall)  # four workers finish sooner on the simulated clock


@pytest.mark.parametrize("workers", [1, 4])
def test_moasha_in_the_simulator_stops_trials_at_rungs_and_passes_the_audit(table, config, workers):
    schedule = RungSchedule(1, 3)
    method = Method(
        "moasha", lambda s: optuna.samplers.RandomSampler(seed=s), stopping="moasha", schedule=schedule, n_trials=40
    )
    run = simulate(table, config, method, 0, workers=workers)
    pruned = [t for t in run.study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert run.pruned == len([t for t in pruned if TrialRecord.of(t).infeasible is None]) > 0
    stopped = [t for t in pruned if TrialRecord.of(t).infeasible is None]
    assert {TrialRecord.of(t).stopped_at_rung for t in stopped} <= {1, 3}
    assert all(len(TrialRecord.of(t).curve) == TrialRecord.of(t).stopped_at_rung for t in stopped)
    assert audit(run.study, schedule) == []
    stopped_epochs = sum(
        TrialRecord.of(t).stopped_at_rung * table.points[table.by_id[_point_id(t)]].epoch_seconds for t in stopped
    )
    complete = [
        t
        for t in run.study.trials
        if t.state == optuna.trial.TrialState.COMPLETE and TrialRecord.of(t).duplicate_of is None
    ]
    full = sum(EPOCHS * table.points[table.by_id[_point_id(t)]].epoch_seconds for t in complete)
    assert run.total_compute == pytest.approx(stopped_epochs + full)


def test_a_compute_budget_stops_asking_and_lets_running_trials_finish(table, config):
    method = Method("random", lambda s: optuna.samplers.RandomSampler(seed=s))
    budget = 5 * table.full_training_seconds()
    run = simulate(table, config, method, 0, workers=2, budget=budget)
    longest = EPOCHS * max(p.epoch_seconds for p in table.points)
    assert budget <= run.total_compute < budget + 2 * longest
