"""MOASHA (dynsweep.sweep.moasha): the rule on hand-made rungs, its decisions stored in an Optuna
study (two workers interleaved, a retried trial, the audit), and how Optuna's samplers take the
trials it stops."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.study import StudyDirection
from optuna.trial import TrialState

from dynsweep.sweep.moasha import (
    Decision,
    RungSchedule,
    audit,
    decide,
    epsilon_net_order,
    quota,
    rank,
    should_continue,
)
from dynsweep.sweep.record import TrialRecord

ACC_MACS = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
SCHEDULE = RungSchedule(min_epochs=1, reduction_factor=3)

optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- The rule -----------------------------------------------------------------------------------


def test_rungs_lie_at_min_epochs_times_powers_of_the_factor_below_max_epochs():
    assert RungSchedule(1, 3).rungs(27) == [1, 3, 9]
    assert RungSchedule(1, 3).rungs(28) == [1, 3, 9, 27]
    assert RungSchedule(3, 3).rungs(27) == [3, 9]
    assert RungSchedule(2, 2).rungs(20) == [2, 4, 8, 16]
    assert RungSchedule(5, 3).rungs(5) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_epochs": 0}, "pruning.min_epochs: must be an integer >= 1, got 0"),
        ({"reduction_factor": 1}, "pruning.reduction_factor: must be an integer >= 2, got 1"),
        ({"reduction_factor": 2.5}, "pruning.reduction_factor: must be an integer >= 2, got 2.5"),
        ({"min_epochs": True}, "pruning.min_epochs: must be an integer >= 1, got True"),
    ],
)
def test_a_bad_schedule_names_the_field(fields, message):
    with pytest.raises(ValueError) as error:
        RungSchedule(**fields)
    assert str(error.value) == message


def test_the_quota_is_the_top_third_rounded_up():
    assert [quota(n, 3) for n in range(1, 11)] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    assert [quota(n, 2) for n in range(1, 7)] == [1, 1, 2, 2, 3, 3]


def test_a_chain_of_dominated_trials_ranks_in_dominance_order():
    rung = {0: (0.7, 3.0), 1: (0.9, 1.0), 2: (0.8, 2.0)}
    assert decide(rung, 1, 1, ACC_MACS, 3) == Decision(1, 1, True, (0.9, 1.0), (1, 2, 0))
    assert decide(rung, 2, 1, ACC_MACS, 3) == Decision(2, 1, False, (0.8, 2.0), (1, 2, 0))
    assert decide(rung, 0, 1, ACC_MACS, 3).keep is False


def test_within_a_front_the_epsilon_net_starts_at_the_most_accurate_and_takes_the_farthest():
    # A front of four (0..3), then 4 (dominated by 2) and 5 (dominated by all). Scaled to [0, 1]:
    # 0 = (0, .818), 1 = (.25, .273), 2 = (.125, .545), 3 = (.75, 0): from 0 the farthest is 3,
    # then 1 (.570 from 3, .600 from 0) before 2 (.300 from 0).
    rung = {0: (0.9, 10.0), 1: (0.8, 4.0), 2: (0.85, 7.0), 3: (0.6, 1.0), 4: (0.7, 8.0), 5: (0.5, 12.0)}
    assert rank(list(rung.values()), ACC_MACS) == [0, 3, 1, 2, 4, 5]
    # Six trials, a quota of two: the non-dominated trials 1 and 2 stop, nearer to kept ones.
    assert [decide(rung, n, 3, ACC_MACS, 3).keep for n in rung] == [True, False, False, True, False, False]


def test_equal_values_fall_to_the_earlier_trial():
    rung = {5: (0.8, 2.0), 3: (0.8, 2.0)}
    assert decide(rung, 5, 1, ACC_MACS, 3) == Decision(5, 1, False, (0.8, 2.0), (3, 5))
    assert decide(rung, 3, 1, ACC_MACS, 3).keep is True


def test_the_first_trial_at_a_rung_goes_on():
    assert decide({7: (0.1, 9.0)}, 7, 9, ACC_MACS, 3) == Decision(7, 9, True, (0.1, 9.0), (7,))


def test_epsilon_net_order_matches_its_definition_on_a_line():
    import numpy as np

    # Points on a line at 0, 1, 2, 3, 4: start at 0, then 4 (farthest), then 2, then 1 (tie with 3: index).
    losses = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
    assert epsilon_net_order(losses) == [0, 4, 2, 1, 3]


def test_syne_tunes_epsilon_net_gives_the_same_order_when_installed():
    """Our within-front order is the one of Syne Tune's compute_epsilon_net (which returns ranks)."""
    non_dominated_priority = pytest.importorskip("syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority")
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(20):
        losses = rng.random((9, 2))
        ranks = non_dominated_priority.compute_epsilon_net(losses, dim=0)
        assert list(np.argsort(ranks)) == epsilon_net_order(losses)


# --- Decisions stored in a study ----------------------------------------------------------------


def new_study(storage=None) -> optuna.Study:
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    study.set_metric_names(["val_acc1", "macs"])
    return study


def start(study: optuna.Study, macs: float) -> optuna.Trial:
    trial = study.ask()
    TrialRecord.write(trial, macs=macs)
    return trial


def report(study: optuna.Study, trial: optuna.Trial, curve: list[float], max_epochs: int = 27) -> Decision:
    """What the trial loop does after each epoch: store the curve, ask the scheduler."""
    TrialRecord.write(trial, curve=curve)
    return should_continue(study, trial.number, len(curve), max_epochs, SCHEDULE)


def test_decisions_are_stored_and_a_stopped_trial_is_pruned_with_its_rung():
    study = new_study()
    first, second = start(study, 10.0), start(study, 20.0)
    assert report(study, first, [0.5]).keep
    stop = report(study, second, [0.4])
    assert stop == Decision(1, 1, False, (0.4, 20.0), (0, 1))
    TrialRecord.write(second, stopped_at_rung=stop.epoch)  # as the trial loop records a stop
    study.tell(second, state=TrialState.PRUNED)
    frozen = study.trials[1]
    assert frozen.state == TrialState.PRUNED and frozen.values is None
    assert TrialRecord.of(frozen).stopped_at_rung == 1
    assert TrialRecord.of(frozen).rungs["1"] == {"trial": 1, "keep": False, "values": [0.4, 20.0], "order": [0, 1]}
    assert TrialRecord.of(study.trials[0]).rungs["1"] == {"trial": 0, "keep": True, "values": [0.5, 10.0], "order": [0]}
    # Epochs that are no rung decide nothing and store nothing.
    assert report(study, first, [0.5, 0.6]) == Decision(0, 2, True)
    assert "2" not in TrialRecord.of(study.trials[0]).rungs


def test_a_trial_that_skipped_rungs_between_two_calls_has_each_decided_in_order():
    study = new_study()
    leader = start(study, 1.0)
    report(study, leader, [0.9, 0.9, 0.95])
    late = start(study, 2.0)
    TrialRecord.write(late, curve=[0.1, 0.2, 0.3, 0.4])
    decision = should_continue(study, late.number, 4, 27, SCHEDULE)
    # Rung 1: second of two, dominated: stopped there; rung 3 is not reached.
    assert (decision.epoch, decision.keep) == (1, False)
    assert "3" not in TrialRecord.of(study.trials[1]).rungs
    report(study, leader, [0.9, 0.9, 0.95, 0.96])  # the leader's rung 3 was decided on its first call
    assert TrialRecord.of(study.trials[0]).rungs["3"]["order"] == [0]


def test_the_rung_value_is_the_best_accuracy_up_to_the_rung():
    study = new_study()
    trial = start(study, 5.0)
    TrialRecord.write(trial, curve=[0.2, 0.7, 0.6])
    assert should_continue(study, trial.number, 3, 27, SCHEDULE).values == (0.7, 5.0)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_two_workers_interleaved_share_the_rungs_exactly(kind, tmp_path):
    """Two workers, each with its own Study object (and, on SQLite, its own connection)."""
    if kind == "memory":
        storage = optuna.storages.InMemoryStorage()
        worker_a = new_study(storage)
        worker_b = optuna.load_study(study_name=worker_a.study_name, storage=storage)
    else:
        url = f"sqlite:///{tmp_path / 'study.db'}"
        worker_a = new_study(optuna.storages.RDBStorage(url))
        worker_b = optuna.load_study(study_name=worker_a.study_name, storage=optuna.storages.RDBStorage(url))

    def order(study: optuna.Study, number: int, epoch: int) -> list[int]:
        return TrialRecord.of(study.trials[number]).rungs[str(epoch)]["order"]

    t0, t1 = start(worker_a, 10.0), start(worker_b, 5.0)
    assert report(worker_a, t0, [0.6]).keep  # rung 1: t0 alone
    stop = report(worker_b, t1, [0.5])  # rung 1: t0 (0.6, 10) and t1 (0.5, 5), one front: t0 first
    assert (stop.keep, order(worker_b, 1, 1)) == (False, [0, 1])
    worker_b.tell(t1, state=TrialState.PRUNED)
    t2 = start(worker_b, 4.0)
    assert report(worker_a, t0, [0.6, 0.7]).keep  # epoch 2: no rung
    assert report(worker_b, t2, [0.7]).keep  # rung 1: t2 (0.7, 4) dominates both
    assert order(worker_a, 2, 1) == [2, 0, 1]
    assert report(worker_a, t0, [0.6, 0.7, 0.8]).keep  # rung 3: t0 alone (t2 is at epoch 1)
    t3 = start(worker_a, 3.0)
    assert report(worker_a, t3, [0.3]).keep  # rung 1: front {t2, t3}, then {t0, t1}; 2 of 4 go on
    assert order(worker_b, 3, 1) == [2, 3, 0, 1]
    assert report(worker_b, t2, [0.7, 0.75, 0.85]).keep  # rung 3: t2 (0.85, 4) dominates t0 (0.8, 10)
    assert order(worker_a, 2, 3) == [2, 0]
    assert audit(worker_a, SCHEDULE) == []


def test_the_audit_reports_a_decision_the_stored_rung_does_not_support():
    study = new_study()
    t0, t1 = start(study, 1.0), start(study, 2.0)
    report(study, t0, [0.9])
    report(study, t1, [0.1])
    TrialRecord.write(t1, rungs={"1": dict(TrialRecord.of(study.trials[1]).rungs["1"], keep=True)})
    assert audit(study, SCHEDULE) == [
        "trial 1, rung 1: stored keep at position 2 of 2, the stored values give stop at position 2"
    ]


def test_a_retried_trial_takes_up_its_failed_runs_decisions_and_counts_once():
    study = new_study()
    t0, t1 = start(study, 9.0), start(study, 1.0)
    report(study, t0, [0.9])
    kept = report(study, t1, [0.95])  # dominates t0
    assert kept == Decision(1, 1, True, (0.95, 1.0), (1, 0))
    # t1's worker dies; the heartbeat's retry callback fails it and queues a copy (user attributes too).
    study.tell(t1, state=TrialState.FAIL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback()(study, study.trials[1])
    retry = study.ask()
    assert retry.number == 2 and TrialRecord.of(retry).rungs["1"] == TrialRecord.of(study.trials[1]).rungs["1"]
    # Its new run starts worse (another process, another ordering of floating-point sums): the
    # stored decision stands, and is not taken again.
    assert report(study, retry, [0.3]) == kept
    assert TrialRecord.of(study.trials[2]).rungs["1"]["trial"] == 1
    # Others see the retry once, with the stored values; the failed run no more.
    t3 = start(study, 5.0)
    assert report(study, t3, [0.92]) == Decision(3, 1, False, (0.92, 5.0), (2, 3, 0))
    assert audit(study, SCHEDULE) == []


def test_a_duplicate_that_reused_a_result_does_not_count_at_rungs():
    study = new_study()
    t0 = start(study, 1.0)
    report(study, t0, [0.9])
    twin = start(study, 1.0)
    TrialRecord.write(twin, curve=[0.9])
    TrialRecord.write(twin, duplicate_of=0)
    study.tell(twin, [0.9, 1.0])
    t2 = start(study, 2.0)
    assert report(study, t2, [0.8]).order == (0, 2)


def test_a_curve_shorter_than_the_epochs_done_is_refused():
    study = new_study()
    trial = start(study, 1.0)
    TrialRecord.write(trial, curve=[0.5])
    with pytest.raises(ValueError, match="trial 0: 3 epochs done but its curve holds 1 accuracies"):
        should_continue(study, trial.number, 3, 27, SCHEDULE)


# --- Optuna's samplers and the trials MOASHA stops ----------------------------------------------

SPACE = {"x": CategoricalDistribution([0, 1, 2, 3]), "y": CategoricalDistribution(["a", "b"])}


def objective_values(params: dict) -> list[float]:
    return [0.5 + 0.1 * params["x"] + (0.05 if params["y"] == "a" else 0.0), 1.0 + params["x"]]


def make_sampler(name: str) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=1, population_size=4)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=1, n_startup_trials=4)
        return optuna.samplers.GPSampler(seed=1, n_startup_trials=4)


def test_optuna_refuses_values_told_with_a_pruned_state():
    """Why a stopped trial's rung values live in user attributes: tell takes none with PRUNED."""
    study = new_study()
    trial = study.ask(SPACE)
    with pytest.raises(ValueError, match="Values cannot be specified when state is TrialState.PRUNED"):
        study.tell(trial, [0.5, 1.0], state=TrialState.PRUNED)


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "gp"])
def test_every_sampler_runs_on_with_stopped_trials(sampler):
    """optuna#5260 and #2853: samplers that crashed on pruned multi-objective trials. Here one
    trial in two is stopped at rung 1 and told PRUNED without values; sampling goes on."""
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(sampler))
    study.set_metric_names(["val_acc1", "macs"])
    for number in range(8 if sampler == "gp" else 16):
        trial = study.ask(SPACE)
        values = objective_values(trial.params)
        if number % 2:
            TrialRecord.write(trial, macs=values[1])
            TrialRecord.write(trial, curve=[values[0] - 0.4])
            should_continue(study, trial.number, 1, 27, RungSchedule(1, 3))
            TrialRecord.write(trial, stopped_at_rung=1)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, values)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED] * (len(states) // 2)


def proposals(sampler: str, pruned_between: bool, n: int) -> list[dict]:
    """``n`` proposals after 6 finished trials; with ``pruned_between``, 6 stopped trials (as
    NSGA-II's generation 0 would hold them) are in the study too."""
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(sampler))
    generation = {optuna.samplers.NSGAIISampler._get_generation_key(): 0}  # private: NSGA-II's generation attribute
    for x, y in [(0, "a"), (1, "b"), (2, "a"), (3, "b"), (1, "a"), (2, "b")]:
        params = {"x": x, "y": y}
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=SPACE, values=objective_values(params), system_attrs=generation
            )
        )
        if pruned_between:
            study.add_trial(
                optuna.trial.create_trial(
                    params={"x": 3, "y": "a"}, distributions=SPACE, state=TrialState.PRUNED, system_attrs=generation
                )
            )
    out = []
    for _ in range(n):
        trial = study.ask(SPACE)
        out.append(trial.params)
        study.tell(trial, objective_values(trial.params))
    return out


@pytest.mark.parametrize("sampler", ["nsga2", "gp"])
def test_nsga2_and_gp_ignore_stopped_trials(sampler):
    """NSGA-II's populations and GP's model hold COMPLETE trials only: with or without stopped
    trials in the study, the same seed proposes the same points."""
    n = 3 if sampler == "gp" else 8
    assert proposals(sampler, True, n) == proposals(sampler, False, n)


def test_tpe_counts_stopped_trials_among_the_worse_ones():
    """TPE splits trials into a good and a bad group; a PRUNED multi-objective trial (no values, no
    intermediate values: Trial.report raises for such studies) is put in the bad group while
    there are enough finished trials to fill the good one."""
    from optuna.samplers._tpe.sampler import _split_trials  # private: TPE's good/bad split

    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("tpe"))
    for x in range(4):
        params = {"x": x, "y": "a"}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=SPACE, values=objective_values(params)))
        study.add_trial(optuna.trial.create_trial(params=params, distributions=SPACE, state=TrialState.PRUNED))
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    below, above = _split_trials(study, trials, n_below=3)
    assert all(t.state == TrialState.COMPLETE for t in below) and len(below) == 3
    assert sum(t.state == TrialState.PRUNED for t in above) == 4
    assert proposals("tpe", True, 6) != proposals("tpe", False, 6)
