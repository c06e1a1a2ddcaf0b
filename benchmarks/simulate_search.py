"""Replay a multi-objective search against recorded learning curves, with no training.

The table of :mod:`benchmarks.record_curves` holds, per point of the quickstart's space and per
seed, the validation accuracy and the seconds of every epoch. :func:`simulate` runs a search on
it as the sweep runs one: the sweep's own space (``dynsweep.sweep.trial.child_params``, warm
starts first), a real Optuna sampler through ``study.ask()`` / ``study.tell()`` on an in-memory
storage, the sweep's own handling of proposals (a held point is proposed anew, an unbuildable
point is infeasible, a finished twin's result is reused), the curve stored in the trial's record
after each epoch, and the same early-stopping calls the trial loop makes
(:func:`dynsweep.sweep.trial.stops_early`, which calls :func:`dynsweep.sweep.moasha.should_continue`,
or the dominance rule of :mod:`dynsweep.sweep.pruning`). ``workers`` run trials side by side
on a simulated clock: an epoch of a point lasts its recorded seconds (per seed the median over
its epochs, then the least over seeds: the recording machine was shared, so epochs measured
while other work ran are slower than the model's own cost).

Compute is the sum of the epoch-seconds trained (it does not depend on the number of workers);
quality is the hypervolume regret of the points trained to the end, each valued at its
seed-averaged best accuracy, against the table's true front, as a fraction of the true front's
hypervolume. The reference point is the true front's nadir (its lowest accuracy, its highest
MACs) widened by a tenth of the front's range: the lowest accuracy of the whole table (``lowest``)
lies so far below the front that its cheapest point alone holds nearly all the hypervolume.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from dynsweep import compat
from dynsweep.sweep import moasha
from dynsweep.sweep.config import Pruning, SweepConfig
from dynsweep.sweep.points import enqueue_untried
from dynsweep.sweep.record import TrialRecord
from dynsweep.sweep.study import enqueue_warm_start
from dynsweep.sweep.trial import child_params, finished_twin, propose_anew, reuse_result, stops_early
from dynsweep.sweep.worker import MAX_RESAMPLES

DEFAULT_TABLE = Path(__file__).with_name("curves_quickstart.json")
DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "sweeps" / "quickstart.yaml"


def point_id(model: str, preset: str | None, spec: dict[str, Any]) -> str:
    """What identifies a trained point: model, preset and spec (the table's and a trial's)."""
    return json.dumps([model, preset, spec], sort_keys=True)


@dataclass
class Point:
    key: str
    macs: float
    curves: np.ndarray  # [seeds, epochs] validation accuracy
    epoch_seconds: float  # the least over seeds of the median over epochs (the machine was shared)

    @property
    def value(self) -> float:
        """The point's accuracy as the sweep values a trial (best over epochs), averaged over seeds."""
        return float(self.curves.max(axis=1).mean())


@dataclass
class CurveTable:
    points: list[Point]
    by_id: dict[str, int]
    epochs: int
    recording_seconds: float
    setup: dict[str, Any]
    infeasible: dict[str, str]  # point id -> why the model cannot be built (the sweep fails such a trial)
    reference_rule: str = "front"
    reference: np.ndarray = field(init=False)  # in losses: (-accuracy, MACs)
    true_hypervolume: float = field(init=False)

    def __post_init__(self) -> None:
        losses = self.losses(range(len(self.points)))
        front = losses[compat.pareto_front_mask(losses)]
        if self.reference_rule == "lowest":  # the lowest accuracy and the highest MACs recorded
            self.reference = losses.max(axis=0)
        elif self.reference_rule == "front":  # the true front's nadir, widened by a tenth of its range
            self.reference = front.max(axis=0) + 0.1 * (front.max(axis=0) - front.min(axis=0))
        else:
            raise ValueError(f"reference: must be 'front' or 'lowest', got {self.reference_rule!r}")
        self.front = sorted(i for i in range(len(self.points)) if any((losses[i] == f).all() for f in front))
        self.true_hypervolume = self.hypervolume(range(len(self.points)))
        self._cache: dict[frozenset[int], float] = {}

    @classmethod
    def load(cls, path: Path = DEFAULT_TABLE, reference: str = "front") -> CurveTable:
        raw = json.loads(Path(path).read_text())
        points, by_id, infeasible = [], {}, {}
        seeds = min(len(p["runs"]) for p in raw["points"].values() if "error" not in p)
        for key, entry in raw["points"].items():
            if "error" in entry:
                infeasible[point_id(entry["model"], entry["preset"], entry["spec"])] = entry["error"]
                continue
            runs = [entry["runs"][s] for s in sorted(entry["runs"], key=int)[:seeds]]
            by_id[point_id(entry["model"], entry["preset"], entry["spec"])] = len(points)
            points.append(
                Point(
                    key,
                    float(entry["macs"]),
                    np.array([r["val_acc1"] for r in runs]),
                    float(min(np.median(r["epoch_seconds"]) for r in runs)),
                )
            )
        epochs = points[0].curves.shape[1]
        return cls(points, by_id, epochs, float(raw["recording_seconds"]), raw["setup"], infeasible, reference)

    def losses(self, indices) -> np.ndarray:
        return np.array([[-self.points[i].value, self.points[i].macs] for i in indices]).reshape(-1, 2)

    def hypervolume(self, indices) -> float:
        losses = self.losses(sorted(set(indices)))
        losses = losses[(losses < self.reference).all(axis=1)]
        return float(compat.hypervolume(losses, self.reference)) if len(losses) else 0.0

    def regret(self, indices: frozenset[int]) -> float:
        """1 - hypervolume(found) / hypervolume(true front): 0 when the true front was found."""
        if indices not in self._cache:
            self._cache[indices] = 1.0 - self.hypervolume(indices) / self.true_hypervolume
        return self._cache[indices]

    def full_training_seconds(self) -> float:
        """The mean compute of training one point for every epoch: the unit the reports use."""
        return float(np.mean([p.epoch_seconds for p in self.points])) * self.epochs


@dataclass(frozen=True)
class Method:
    """A search: a sampler (made from a seed) and the early stopping of the trial loop."""

    name: str
    sampler: Callable[[int], optuna.samplers.BaseSampler]
    stopping: str = "none"  # "none", "moasha" or "dominance"
    schedule: moasha.RungSchedule = dataclasses.field(default_factory=moasha.RungSchedule)
    min_dominating: int = 4
    warmup_epochs: int = 5
    n_trials: int | None = None  # a fixed trial budget (else: the compute budget)


@dataclass
class Run:
    """One simulated search: after each trial that finished training, (compute, regret)."""

    method: str
    seed: int
    workers: int
    compute: list[float]
    regret: list[float]
    wall: list[float]
    trials: int
    pruned: int
    reused: int
    total_compute: float
    infeasible: int = 0
    study: optuna.Study | None = field(default=None, repr=False)

    def regret_at(self, compute: float) -> float:
        """The regret after ``compute`` epoch-seconds (1 before any trial finished)."""
        i = int(np.searchsorted(self.compute, compute, side="right"))
        return self.regret[i - 1] if i else 1.0

    def compute_to(self, regret: float) -> float:
        """The compute at which the regret first fell to ``regret`` or below (inf: never)."""
        for c, r in zip(self.compute, self.regret):
            if r <= regret:
                return c
        return float("inf")


@dataclass
class _Running:
    trial: optuna.Trial
    point: int
    seed: int
    epochs_done: int = 0  # up to the next decision, once scheduled


def _decision_epochs(method: Method, max_epochs: int) -> list[int]:
    """Epochs after which the trial loop's stopping call can stop a trial (at others it keeps it)."""
    if method.stopping == "moasha":
        return method.schedule.rungs(max_epochs) + [max_epochs]
    if method.stopping == "dominance":
        return list(range(method.warmup_epochs + 1, max_epochs + 1))
    return [max_epochs]


def new_study(config: SweepConfig, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """An in-memory study as the sweep opens one: objectives named, the warm start enqueued."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        study.set_metric_names(["val_acc1", "macs"])
    enqueue_warm_start(study, config)
    return study


def with_stopping(config: SweepConfig, method: Method) -> SweepConfig:
    """The spec with the method's early stopping, as a spec's ``pruning:`` block sets it."""
    rule = {
        "none": Pruning(),
        "moasha": Pruning("moasha", method.schedule.min_epochs, method.schedule.reduction_factor),
        "dominance": Pruning("dominance", min_dominating=method.min_dominating, warmup_epochs=method.warmup_epochs),
    }[method.stopping]
    return dataclasses.replace(config, pruning=rule)


def simulate(
    table: CurveTable,
    config: SweepConfig,
    method: Method,
    seed: int,
    workers: int = 1,
    budget: float = float("inf"),
    max_trials: int = 400,
    infeasible: str = "prune",
) -> Run:
    """One search of ``method`` on ``table``: trials are asked until ``budget`` epoch-seconds are
    spent (or the method's trial budget, or ``max_trials``); those running then run to their end.

    ``infeasible``: how a trial at a point the model cannot build is told: ``"prune"``, as the
    sweep tells it (infeasible, like a trial over a constraint: samplers see it), or ``"fail"``
    (samplers ignore it, and TPE proposes it again and again).
    """
    if infeasible not in ("fail", "prune"):
        raise ValueError(f"infeasible: must be 'fail' or 'prune', got {infeasible!r}")
    rng = np.random.default_rng(seed)
    config = with_stopping(config, method)
    study = new_study(config, method.sampler(seed))
    proposals = random.Random(seed)
    n_trials = method.n_trials or max_trials
    max_epochs = table.epochs
    stops = _decision_epochs(method, max_epochs)
    clock: list[tuple[float, int, int]] = []  # (time of the next decision, tie-break, worker)
    running: dict[int, _Running] = {}
    finished: set[int] = set()
    history: list[tuple[float, frozenset[int]]] = []  # (time, points trained to the end so far)
    epochs: list[tuple[float, float]] = []  # every epoch trained: (end time, seconds)
    counts = {"asked": 0, "pruned": 0, "reused": 0, "failed": 0, "resampled": 0}
    resampled = [0]  # proposals in a row that repeated a held point, as the sweep's worker counts them
    spent = [0.0]

    def advance(worker: int, run: _Running, now: float) -> None:
        """Train ``run`` up to its next decision epoch."""
        nxt = next(e for e in stops if e > run.epochs_done)
        seconds = table.points[run.point].epoch_seconds
        for k in range(nxt - run.epochs_done):
            epochs.append((now + seconds * (k + 1), seconds))
        spent[0] += seconds * (nxt - run.epochs_done)
        run.epochs_done = nxt
        heapq.heappush(clock, (epochs[-1][0], len(epochs), worker))

    def start(worker: int, now: float) -> None:
        """The worker asks for trials until one needs training, as the sweep's trial loop does: a
        proposal of a held point is made anew, an unbuildable point is told infeasible, a finished
        twin's result is reused."""
        while counts["asked"] < n_trials and spent[0] < budget:
            trial = study.ask()
            params = child_params(trial, config, study.study_name)
            TrialRecord.write(trial, model=params["model"], seed=params["seed"], preset=params["preset"])
            # wait=False: the sweep would wait for a running holder of the point; here one thread
            # runs every worker, so the worker proposes anew instead
            if propose_anew(study, trial, config, params, resampled[0] < MAX_RESAMPLES, wait=False) is not None:
                counts["resampled"] += 1
                resampled[0] += 1
                if resampled[0] >= MAX_RESAMPLES and enqueue_untried(study, config, proposals):
                    resampled[0] = 0
                continue
            resampled[0] = 0
            counts["asked"] += 1
            identity = point_id(params["model"], params["preset"], params["spec"])
            if identity in table.infeasible:  # the sweep cannot build it: infeasible, never trained
                if infeasible == "fail":
                    TrialRecord.write(trial, fail_reason=table.infeasible[identity])
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    TrialRecord.write(trial, infeasible=table.infeasible[identity])
                    study.tell(trial, state=TrialState.PRUNED)
                counts["failed"] += 1
                continue
            index = table.by_id[identity]
            TrialRecord.write(trial, macs=table.points[index].macs)
            twin = finished_twin(study, params) if config.budget.reuse_duplicates else None
            if twin is not None:
                reuse_result(study, trial, twin, params, Path("/nonexistent"), 0.0, lambda _: None)
                counts["reused"] += 1
                continue
            TrialRecord.write(trial, child_params=params)
            run = _Running(trial, index, int(rng.integers(table.points[index].curves.shape[0])))
            running[worker] = run
            advance(worker, run, now)
            return

    for worker in range(workers):
        start(worker, 0.0)
    while clock:
        now, _, worker = heapq.heappop(clock)
        run = running.pop(worker)
        point = table.points[run.point]
        curve = [float(a) for a in point.curves[run.seed, : run.epochs_done]]
        TrialRecord.write(run.trial, curve=curve)
        if run.epochs_done == max_epochs:
            study.tell(run.trial, [max(curve), point.macs])
            finished.add(run.point)
            history.append((now, frozenset(finished)))
        elif stops_early(study, run.trial, config, run.epochs_done, curve[-1], point.macs, max_epochs):
            study.tell(run.trial, state=TrialState.PRUNED)
            counts["pruned"] += 1
        else:
            running[worker] = run
            advance(worker, run, now)
            continue
        start(worker, now)
    run = _record(table, method, seed, workers, history, epochs, counts)
    run.study = study
    return run


def _record(table, method, seed, workers, history, epochs, counts) -> Run:
    """(compute, regret, wall-clock) after each finish; compute counts every epoch ended by then."""
    epochs.sort()
    ends = np.array([e for e, _ in epochs])
    spent = np.cumsum([s for _, s in epochs])
    compute, regret, wall = [], [], []
    for now, points in history:
        i = int(np.searchsorted(ends, now, side="right"))
        compute.append(float(spent[i - 1]) if i else 0.0)
        regret.append(table.regret(points))
        wall.append(now)
    total = float(spent[-1]) if len(spent) else 0.0
    return Run(
        method.name,
        seed,
        workers,
        compute,
        regret,
        wall,
        counts["asked"],
        counts["pruned"],
        counts["reused"],
        total,
        counts["failed"],
    )
