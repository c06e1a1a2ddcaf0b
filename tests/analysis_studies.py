"""Hand-made studies with the records ``dynsweep sweep`` writes (dynsweep.sweep.record), for the
analysis tests and the notebooks' test."""

from __future__ import annotations

import datetime
import json
import warnings
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from dynsweep.sweep.record import StudyRecord, TrialRecord

SPACE = {"num_bases": [1, 2, 4], "stages": [[], [3], [2, 3]]}
ARCHS = ["mobilenet_v2", "resnet18"]


def trial(
    arch: str,
    acc: float | None,
    macs: float,
    state: TrialState = TrialState.COMPLETE,
    num_bases: int = 4,
    stages: list[int] | None = None,
    preset: str | None = None,
    infeasible: str | None = None,
    params: float = 1e5,
    max_epochs: int | None = None,
    finished_at: float | None = None,
    **record: Any,
) -> dict[str, Any]:
    """One trial; ``record`` adds TrialRecord fields (seeds, seed_values, point, duplicate_of,
    repeat_of, curve, rungs, latency...). With ``seed_values`` and no ``acc``, a finished trial is
    told their mean; ``max_epochs`` goes into its training params; ``finished_at``: it finished that
    many seconds after :data:`START` (else when added)."""
    return dict(
        max_epochs=max_epochs,
        finished_at=finished_at,
        arch=arch,
        acc=acc,
        macs=macs,
        state=state,
        num_bases=num_bases,
        stages=[3] if stages is None else stages,
        preset=preset,
        infeasible=infeasible,
        params=params,
        record=record,
    )


def add_trials(study: optuna.Study, trials: list[dict[str, Any]], multi_arch: bool = True) -> None:
    """Add trials as run_trial records them: params per arch, cost and spec in user attributes."""
    for number, t in enumerate(trials, start=len(study.trials)):
        spec = {"width_mult": 0.125, "num_bases": t["num_bases"], "stages": t["stages"]}
        record: dict[str, Any] = dict(
            model=t["arch"],
            seed=1000 + number,
            macs=int(t["macs"]),
            params=int(t["params"]),
            dir=f"/runs/study/trial_{number:04d}",
            child_params={"model": t["arch"], "preset": t["preset"], "spec": spec, "seed": 1000 + number},
        )
        if t.get("max_epochs") is not None:
            record["child_params"]["training"] = {"max_epochs": t["max_epochs"]}
        params: dict[str, Any] = {}
        distributions: dict[str, Any] = {}
        if multi_arch:
            params["arch"], distributions["arch"] = t["arch"], CategoricalDistribution(ARCHS)
        if t["preset"]:
            record["preset"] = t["preset"]
        else:
            for name, choices in SPACE.items():
                encoded = [c if isinstance(c, int) else json.dumps(c) for c in choices]
                value = t[name] if isinstance(t[name], int) else json.dumps(t[name])
                params[f"{t['arch']}.{name}"] = value
                distributions[f"{t['arch']}.{name}"] = CategoricalDistribution(encoded)
        if t["infeasible"]:
            record["infeasible"] = t["infeasible"]
        record.update(t.get("record", {}))
        values = None
        if t["state"] == TrialState.COMPLETE:
            acc = t["acc"] if t["acc"] is not None else mean_of(record["seed_values"])
            values = [acc, float(t["macs"])]
            record.setdefault("curve", [acc * 0.9, acc])
        attrs = TrialRecord.as_user_attrs(**record)
        frozen = create_trial(
            state=t["state"], values=values, params=params, distributions=distributions, user_attrs=attrs
        )
        if t.get("finished_at") is not None:
            frozen.datetime_start = START
            frozen.datetime_complete = START + datetime.timedelta(seconds=t["finished_at"])
        study.add_trial(frozen)


def mean_of(values: list[float | None]) -> float:
    """The value the driver tells the study: the mean of the finished seeds."""
    finished = [v for v in values if v is not None]
    return sum(finished) / len(finished)


def make_study(storage: str | None, name: str, trials: list[dict[str, Any]], **attrs: Any) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_acc1", "macs"])
    StudyRecord.write(study, **attrs)
    add_trials(study, trials)
    return study


def two_architectures() -> list[dict[str, Any]]:
    """resnet18 and mobilenet_v2, dynamic and static, with a tie, an infeasible, a failed, a pruned
    and a running trial; mobilenet_v2 is dominated by resnet18 at higher cost only."""
    return [
        trial("resnet18", 0.90, 4e6, preset="resnet18", stages=[]),
        trial("resnet18", 0.93, 3e6, num_bases=4),
        trial("resnet18", 0.93, 3e6, num_bases=2),  # a tie: both on the front
        trial("resnet18", 0.88, 2e6, num_bases=2, stages=[]),
        trial("resnet18", 0.85, 2.5e6, num_bases=1, stages=[]),  # dominated
        trial("resnet18", None, 9e6, state=TrialState.PRUNED, infeasible="MACs 9,000,000 over the budget 8,000,000"),
        trial("resnet18", None, 1e6, state=TrialState.FAIL),
        trial("mobilenet_v2", 0.86, 1e6, num_bases=4, stages=[3]),
        trial("mobilenet_v2", 0.80, 0.5e6, num_bases=2, stages=[]),
        trial("mobilenet_v2", 0.84, 1.5e6, num_bases=1, stages=[]),  # dominated within mobilenet_v2
        trial("mobilenet_v2", 0.91, 3.5e6, preset="dy_mobilenet_v2", stages=[2, 3]),  # dominated by resnet18's tie
        trial("mobilenet_v2", None, 2e6, state=TrialState.RUNNING),
    ]


START = datetime.datetime(2024, 1, 1)
"""When the trials of :func:`stopped_early` started."""

MOASHA_SPEC = {
    "name": "stopped",
    "architectures": ["resnet18", "mobilenet_v2"],
    "training": {"max_epochs": 9},
    "pruning": {"algorithm": "moasha", "min_epochs": 1, "reduction_factor": 3},
}
"""Rungs at epochs 1 and 3 of 9."""


def stopped_early() -> list[dict[str, Any]]:
    """Trials of 9 epochs under MOASHA (:data:`MOASHA_SPEC`), finished out of number order
    (1, 3, 2, 0, 5, 4, 6, 7; 8 runs): 1 stopped at rung 0 (epoch 1), 2 at rung 1 (epoch 3, its
    curve one epoch past it), 5 by dominance at epoch 2, 3 infeasible (not stopped), 6 trained two
    seeds, 7 reused 0's result; 8 is running after 2 epochs. Epochs trained: 9, 1, 4, 0, 9, 2, 18, 0, 2."""
    full = dict(max_epochs=9)
    return [
        trial("resnet18", 0.90, 4e6, curve=[0.5 + 0.05 * k for k in range(9)], finished_at=10, **full),
        trial(
            "resnet18",
            None,
            3e6,
            state=TrialState.PRUNED,
            curve=[0.5],
            stopped_at_rung=1,
            rungs={"1": {"trial": 1, "keep": False, "values": [0.5, 3e6], "order": [0, 1]}},
            finished_at=2,
            **full,
        ),
        trial(
            "resnet18",
            None,
            2e6,
            state=TrialState.PRUNED,
            curve=[0.6, 0.7, 0.72, 0.75],
            stopped_at_rung=3,
            rungs={
                "1": {"trial": 2, "keep": True, "values": [0.6, 2e6], "order": [2, 1]},
                "3": {"trial": 2, "keep": False, "values": [0.72, 2e6], "order": [0, 2]},
            },
            finished_at=5,
            **full,
        ),
        trial("resnet18", None, 9e6, state=TrialState.PRUNED, infeasible="MACs over the budget", finished_at=3, **full),
        trial("mobilenet_v2", 0.85, 1e6, curve=[0.85] * 9, finished_at=20, **full),
        trial(
            "mobilenet_v2",
            None,
            0.8e6,
            state=TrialState.PRUNED,
            curve=[0.4, 0.45],
            stopped_at_epoch=2,
            finished_at=12,
            **full,
        ),
        trial(
            "mobilenet_v2",
            None,
            0.5e6,
            seeds=[1, 2],
            seed_values=[0.80, 0.82],
            curve=[0.8] * 9,
            finished_at=25,
            **full,
        ),
        trial("resnet18", 0.90, 4e6, duplicate_of=0, curve=[0.5 + 0.05 * k for k in range(9)], finished_at=26, **full),
        trial("resnet18", None, 1.5e6, state=TrialState.RUNNING, curve=[0.3, 0.4], **full),
    ]


def measured_latency() -> list[dict[str, Any]]:
    """Trials with a measured latency (ms). resnet18: 1 (0.88, 2 MMACs) is on its MACs front but
    0 (0.90, 4 MMACs) is more accurate and faster; 3 is on neither front, 7 stopped. mobilenet_v2:
    every MACs-front point is on the latency front. Over all, 5 (0.80, 0.5 MMACs, 1.2 ms) is on the
    MACs front and 2 (0.80, 1.0 ms) is as accurate and faster."""

    def timed(arch: str, acc: float | None, macs: float, ms: float, **kw: Any) -> dict[str, Any]:
        return trial(arch, acc, macs, latency={"median_ms": ms, "ratio": ms / 2.0}, **kw)

    return [
        timed("resnet18", 0.90, 4e6, 2.0),
        timed("resnet18", 0.88, 2e6, 3.0, num_bases=2),
        timed("resnet18", 0.80, 1e6, 1.0, num_bases=1),
        timed("resnet18", 0.85, 3e6, 2.5, num_bases=1, stages=[]),
        timed("mobilenet_v2", 0.86, 1e6, 1.5),
        timed("mobilenet_v2", 0.80, 0.5e6, 1.2, num_bases=2),
        timed("mobilenet_v2", 0.84, 1.5e6, 1.4, num_bases=1),
        timed("resnet18", None, 5e6, 4.0, state=TrialState.PRUNED, stopped_at_rung=1, curve=[0.3], stages=[2, 3]),
    ]


REFERENCE = {"val_acc1": 0.0, "macs": 5e6}
"""The reference point stored in :func:`repeated_seeds`' study."""


def repeated_seeds() -> list[dict[str, Any]]:
    """Trials trained with several seeds, each seed's accuracy known.

    resnet18 (front by cost: 4, 1, 2, 5): the baseline (0), Fix (1) and Dy (2) presets on seeds
    0, 1, 2; a searched point (3) whose front repeat (5) retrained it with two more seeds; a
    searched point of one seed (4); a duplicate (6) of the Dy preset and a running repeat (7) of
    it. mobilenet_v2: Dy (8) on seeds 0, 1, Fix (9) on seeds 5, 6, the baseline (10) on one seed.
    """
    dy, static = dict(num_bases=4, stages=[3]), dict(stages=[])
    return [
        trial(
            "resnet18",
            None,
            4e6,
            preset="resnet18",
            **static,
            seeds=[0, 1, 2],
            seed_values=[0.90, 0.91, 0.92],
            point="r-base",
        ),
        trial(
            "resnet18",
            None,
            2e6,
            preset="fix_resnet18",
            **static,
            seeds=[0, 1, 2],
            seed_values=[0.84, 0.85, 0.86],
            point="r-fix",
        ),
        trial(
            "resnet18",
            None,
            2.2e6,
            preset="dy_resnet18",
            **dy,
            seeds=[0, 1, 2],
            seed_values=[0.90, 0.905, 0.91],
            point="r-dy",
            value_std=0.5,
            value_ci=[0.0, 1.0],  # stored wrong: the analysis recomputes them
        ),
        trial("resnet18", None, 3e6, num_bases=2, seeds=[10, 11], seed_values=[0.905, 0.915], point="r-s2"),
        trial("resnet18", None, 1e6, num_bases=1, seeds=[20], seed_values=[0.80], point="r-s1"),
        trial(
            "resnet18",
            None,
            3e6,
            num_bases=2,
            seeds=[10, 11, 12, 13],
            seed_values=[0.905, 0.915, 0.93, 0.92],
            point="r-s2",
            repeat_of=3,
        ),
        trial(
            "resnet18",
            None,
            2.2e6,
            preset="dy_resnet18",
            **dy,
            seeds=[0, 1, 2],
            seed_values=[0.90, 0.905, 0.91],
            point="r-dy",
            duplicate_of=2,
        ),
        trial(
            "resnet18",
            None,
            2.2e6,
            state=TrialState.RUNNING,
            preset="dy_resnet18",
            **dy,
            seeds=[0, 1, 2, 3, 4],
            seed_values=[0.90, 0.905, 0.91, None, None],
            point="r-dy",
            repeat_of=2,
        ),
        trial(
            "mobilenet_v2",
            None,
            1e6,
            preset="dy_mobilenet_v2",
            **dy,
            seeds=[0, 1],
            seed_values=[0.85, 0.87],
            point="m-dy",
        ),
        trial(
            "mobilenet_v2",
            None,
            0.9e6,
            preset="fix_mobilenet_v2",
            **static,
            seeds=[5, 6],
            seed_values=[0.80, 0.81],
            point="m-fix",
        ),
        trial("mobilenet_v2", 0.86, 2e6, preset="mobilenet_v2", **static, point="m-base"),
    ]
