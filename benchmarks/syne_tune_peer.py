"""The peer: Syne Tune's own ``MOASHA`` on the same recorded curves, through its simulator backend.

The table of :mod:`benchmarks.record_curves` becomes a Syne Tune ``BlackboxTabular`` (one row per
point; per seed and epoch: the error ``1 - best accuracy so far``, the MACs scaled to [0, 1],
and the cumulative seconds), run by ``UserBlackboxBackend`` with ``SimulatorCallback`` (simulated
time, no training) and ``MOASHA(metrics=["error", "macs"])`` with the schedule we give ours.
Two changes, both in thin subclasses, make it search what the sweep searches: its proposals are
the quickstart's warm starts first, then points drawn as Optuna's RandomSampler draws them from
the sweep's space (architecture first, then its fields); MOASHA's own ``suggest`` draws
uniformly over its config space, which here is the list of points.

Syne Tune 0.16's ``NonDominatedPriority`` returns the order of the rows (row indices, best
first) where ``Bracket.on_result`` expects each row's rank, and its ``nondominated_sort`` uses
the epsilon-net's ranks as indices inside a front; so a new trial's priority is the index of
the row ranked last, not its own rank. :class:`RankedNonDominatedPriority` gives the ranks (the
same fronts and epsilon-net, Syne Tune's functions): the row ``syne_tune_moasha_ranked``.

Needs ``pip install 'dynsweep[bench]'`` (``syne-tune``); not used by ``make test``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile

import numpy as np

from benchmarks.simulate_search import CurveTable, Run, point_id
from dynsweep.sweep.config import SweepConfig


def blackbox_of(table: CurveTable):
    """The curves as a Syne Tune tabular blackbox: config ``{"point": key, "row": its index}``,
    fidelity ``epoch``."""
    import pandas as pd
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.config_space import choice, randint

    keys = [p.key for p in table.points]
    max_macs = max(p.macs for p in table.points)
    seeds = table.points[0].curves.shape[0]
    evaluations = np.zeros((len(keys), seeds, table.epochs, 3))
    for i, point in enumerate(table.points):
        evaluations[i, :, :, 0] = 1.0 - np.maximum.accumulate(point.curves, axis=1)
        evaluations[i, :, :, 1] = point.macs / max_macs
        evaluations[i, :, :, 2] = point.epoch_seconds * np.arange(1, table.epochs + 1)
    # Two columns: Syne Tune looks rows up by a tuple of the columns, which pandas 3 takes for a
    # row-and-column pair when the index has one level.
    return BlackboxTabular(
        hyperparameters=pd.DataFrame({"point": keys, "row": range(len(keys))}),
        configuration_space={"point": choice(keys), "row": choice(list(range(len(keys))))},
        fidelity_space={"epoch": randint(1, table.epochs)},
        objectives_evaluations=evaluations,
        fidelity_values=np.arange(1, table.epochs + 1),
        objectives_names=["error", "macs", "elapsed_time"],
    )


def sweep_proposals(table: CurveTable, config: SweepConfig, rng: np.random.Generator):
    """The points the sweep's space proposes at random, warm starts first (as the sweep asks them),
    less those the model cannot build (the sweep fails them at no compute)."""
    from dynsweep.models import get_model_entry
    from dynsweep.sweep.space import preset_spec

    for preset in config.warm_start:
        entry = get_model_entry(preset)
        arch = config.architecture(entry.baseline or entry.name)
        yield table.points[table.by_id[point_id(arch.model, preset, preset_spec(preset, arch))]].key
    while True:
        arch = config.architectures[rng.integers(len(config.architectures))]
        spec = dict(arch.base)
        for dim in arch.space:
            spec[dim.name] = dim.choices[rng.integers(len(dim.choices))]
        identity = point_id(arch.model, None, spec)
        if identity not in table.infeasible:  # a point the model cannot build is not proposed
            yield table.points[table.by_id[identity]].key


def ranked_priority_class():
    from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import MOPriority
    from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import (
        compute_epsilon_net,
        pareto_efficient,
    )

    class RankedNonDominatedPriority(MOPriority):
        """Each row's rank (0 = first): Pareto fronts in turn, each in Syne Tune's epsilon-net
        order from the row best in the first objective."""

        def priority_unsafe(self, objectives: np.ndarray) -> np.ndarray:
            remaining = np.arange(len(objectives))
            order: list[int] = []
            while remaining.size:
                mask = pareto_efficient(objectives[remaining])
                front = remaining[mask]
                order.extend(front[np.argsort(compute_epsilon_net(objectives[front], dim=0))].tolist())
                remaining = remaining[~mask]
            ranks = np.empty(len(order), dtype=int)
            ranks[order] = np.arange(len(order))
            return ranks

    return RankedNonDominatedPriority


def simulate_syne_tune(
    table: CurveTable,
    config: SweepConfig,
    seed: int,
    workers: int,
    budget: float,
    ranked: bool = False,
    min_epochs: int = 1,
    reduction_factor: int = 3,
) -> Run:
    """One run of Syne Tune's MOASHA until ``budget`` epoch-seconds; the same record as ours."""
    from syne_tune import Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository import UserBlackboxBackend
    from syne_tune.optimizer.scheduler import TrialSuggestion
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    blackbox = blackbox_of(table)
    proposals = sweep_proposals(table, config, np.random.default_rng(seed))
    index_of = {p.key: i for i, p in enumerate(table.points)}

    class SweepMOASHA(MOASHA):
        def suggest(self) -> TrialSuggestion | None:
            key = next(proposals)
            return TrialSuggestion.start_suggestion({"point": key, "row": index_of[key]})

    priority = ranked_priority_class()() if ranked else None
    scheduler = SweepMOASHA(
        config_space=blackbox.configuration_space,
        metrics=["error", "macs"],
        do_minimize=True,
        time_attr="epoch",
        max_t=table.epochs,
        grace_period=min_epochs,
        reduction_factor=reduction_factor,
        multiobjective_priority=priority,
        random_seed=seed,
    )
    spent = [0.0]
    rows: list[tuple[float, int, int, int]] = []  # (simulated time, trial, point, epoch) per result

    class Recorder(SimulatorCallback):
        def on_trial_result(self, trial, status, result, decision) -> None:
            super().on_trial_result(trial, status, result, decision)
            spent[0] += table.points[trial.config["row"]].epoch_seconds
            rows.append((float(result["st_tuner_time"]), trial.trial_id, trial.config["row"], int(result["epoch"])))

    recorder = Recorder()
    np.random.seed(seed)  # the backend draws each trial's seed from NumPy's global generator
    with tempfile.TemporaryDirectory() as folder:
        os.environ["SYNETUNE_FOLDER"] = folder
        tuner = Tuner(
            trial_backend=UserBlackboxBackend(blackbox=blackbox, elapsed_time_attr="elapsed_time"),
            scheduler=scheduler,
            stop_criterion=lambda status: spent[0] >= budget,
            n_workers=workers,
            sleep_time=0,
            results_update_interval=1e9,
            print_update_interval=1e9,
            callbacks=[recorder],
            save_tuner=False,
            tuner_name=f"dynsweep-peer-{seed}",
        )
        with contextlib.redirect_stdout(io.StringIO()):  # its progress tables
            tuner.run()
    return _record(table, rows, "syne_tune_moasha_ranked" if ranked else "syne_tune_moasha", seed, workers)


def _record(table: CurveTable, rows: list[tuple[float, int, int, int]], name: str, seed: int, workers: int) -> Run:
    """(compute, regret, wall-clock) after each trial that reached the last epoch, as for ours."""
    finished: set[int] = set()
    compute, regret, wall = [], [], []
    spent = 0.0
    for now, _, point, epoch in sorted(rows, key=lambda r: r[0]):
        spent += table.points[point].epoch_seconds
        if epoch == table.epochs:
            finished.add(point)
            compute.append(spent)
            regret.append(table.regret(frozenset(finished)))
            wall.append(now)
    trials = len({trial for _, trial, _, _ in rows})
    completed = len({trial for _, trial, _, epoch in rows if epoch == table.epochs})
    return Run(name, seed, workers, compute, regret, wall, trials, trials - completed, 0, spent)
