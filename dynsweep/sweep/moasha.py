"""Multi-objective asynchronous successive halving (MOASHA): which running trials of an Optuna
study go on at each rung, decided from the study as stored.

Rungs lie at ``min_epochs * reduction_factor**k`` epochs, below the trial's ``max_epochs``. When a
trial reaches a rung it is ranked among every trial that has reached that rung (finished,
stopped, or still running): by non-dominated sorting of its values there (its best validation
accuracy up to that epoch, its costs such as MACs), and within a front by the epsilon-net order
of Salinas et al. (2021), the tie-break of Schmucker et al.'s MO-ASHA (2021) and of Syne Tune's
``NonDominatedPriority``: first the most accurate trial, then each time the trial farthest from
those already chosen, on objectives scaled to [0, 1] over the rung. It goes on when fewer than
``n / reduction_factor`` of the ``n`` trials there rank ahead of it (the top third, rounded up,
for a factor of 3). Asynchronous, as ASHA's
stopping rule (Li et al. 2020): nobody waits for a rung to fill, early arrivals meet fewer rivals.

Each decision is stored in the trial's record (``TrialRecord.rungs``, by the rung's epoch: its
values, kept or not, and the trials at the rung in rank order), so workers that share a storage share the
decisions, a retried trial (Optuna's retry callback copies user attributes) takes up the
decisions of its failed run instead of deciding again, and :func:`audit` rechecks every decision
from the rung values stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from dynsweep import compat
from dynsweep.sweep.record import TrialRecord, retry_history

ACCURACY = "val_acc1"
"""The objective read from the accuracy curve; every other objective is a cost stored per trial."""


@dataclass(frozen=True)
class RungSchedule:
    """``pruning: {algorithm: moasha, min_epochs, reduction_factor}``: where the rungs are and how
    many trials of a rung go on (the first ``1 / reduction_factor`` of them)."""

    min_epochs: int = 1
    reduction_factor: int = 3

    def __post_init__(self) -> None:
        for name, value, low in (("min_epochs", self.min_epochs, 1), ("reduction_factor", self.reduction_factor, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"pruning.{name}: must be an integer >= {low}, got {value!r}")

    def rungs(self, max_epochs: int) -> list[int]:
        """The rung epochs of a trial trained for ``max_epochs``: decisions happen there, not at the end."""
        epochs, epoch = [], self.min_epochs
        while epoch < max_epochs:
            epochs.append(epoch)
            epoch *= self.reduction_factor
        return epochs

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": "moasha", "min_epochs": self.min_epochs, "reduction_factor": self.reduction_factor}


@dataclass(frozen=True)
class Decision:
    """A trial's fate at a rung: ``keep`` (go on) or stop, why (its ``position`` in ``order``, the
    trials at the rung best first) and its ``values`` there. ``epoch`` is the rung; a decision at an
    epoch that is no rung keeps the trial, with an empty ``order``."""

    number: int
    epoch: int
    keep: bool
    values: tuple[float, ...] = ()
    order: tuple[int, ...] = field(default=())

    @property
    def position(self) -> int:
        return self.order.index(self.number)

    @property
    def considered(self) -> int:
        return len(self.order)

    def to_record(self) -> dict[str, Any]:
        return {"trial": self.number, "keep": self.keep, "values": list(self.values), "order": list(self.order)}

    @classmethod
    def from_record(cls, epoch: int, record: Mapping[str, Any]) -> Decision:
        """A stored decision; ``number`` is the trial that took it (a retry's failed run, maybe)."""
        return cls(int(record["trial"]), epoch, bool(record["keep"]), tuple(record["values"]), tuple(record["order"]))


# --- The rule on given values -------------------------------------------------------------------


def epsilon_net_order(losses: np.ndarray) -> list[int]:
    """Indices of ``losses`` (rows, lower is better) in the epsilon-net order: the best in the first
    column, then each time the row farthest (Euclidean) from the rows already taken; ties by index."""
    remaining = list(range(len(losses)))
    first = min(remaining, key=lambda i: (losses[i, 0], i))
    order = [first]
    remaining.remove(first)
    nearest = np.linalg.norm(losses - losses[first], axis=1)
    while remaining:
        pick = max(remaining, key=lambda i: (nearest[i], -i))
        order.append(pick)
        remaining.remove(pick)
        nearest = np.minimum(nearest, np.linalg.norm(losses - losses[pick], axis=1))
    return order


def rank(values: Sequence[Sequence[float]], directions: Sequence[StudyDirection]) -> list[int]:
    """Indices of ``values`` best first: non-dominated fronts in turn, each in epsilon-net order of
    the objectives scaled to [0, 1] over all ``values``."""
    if len(values) == 0:
        return []
    signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
    losses = np.asarray(values, dtype=float) * signs
    span = losses.max(axis=0) - losses.min(axis=0)
    scaled = (losses - losses.min(axis=0)) / np.where(span > 0, span, 1.0)
    fronts = compat.non_domination_rank(losses)
    order: list[int] = []
    for front in np.unique(fronts):
        members = np.flatnonzero(fronts == front)
        order.extend(int(members[i]) for i in epsilon_net_order(scaled[members]))
    return order


def quota(considered: int, reduction_factor: int) -> int:
    """How many of the ``considered`` trials at a rung go on: those with fewer than
    ``considered / reduction_factor`` trials ranked ahead, i.e. the top ``1 / reduction_factor``
    rounded up (the first trial at a rung always goes on)."""
    return -(-considered // reduction_factor)


def decide(
    rung: Mapping[int, Sequence[float]],
    number: int,
    epoch: int,
    directions: Sequence[StudyDirection],
    reduction_factor: int,
) -> Decision:
    """Trial ``number``'s decision at the rung ``epoch`` given every trial's values there
    (``rung``: trial number -> values, ``number`` included)."""
    numbers = sorted(rung)  # ties fall to the earlier trial
    order = tuple(numbers[i] for i in rank([rung[n] for n in numbers], directions))
    keep = order.index(number) < quota(len(order), reduction_factor)
    return Decision(number, epoch, keep, tuple(float(v) for v in rung[number]), order)


# --- The study as stored ------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredTrial:
    """What the scheduler reads of a trial: its accuracy per epoch so far, its costs, its decisions."""

    curve: list[float]
    costs: dict[str, float]
    decisions: dict[int, dict[str, Any]]
    duplicate: bool


def stored_trial(trial: FrozenTrial) -> StoredTrial:
    """What the scheduler reads of a trial's record: its curve, costs, duplicate mark and the
    decisions stored at its rungs (``TrialRecord.rungs``, keyed by the rung's epoch)."""
    record = TrialRecord.of(trial)
    costs = {k: float(v) for k, v in (("macs", record.macs), ("params", record.params)) if v is not None}
    return StoredTrial(
        curve=list(record.curve),
        costs=costs,
        decisions={int(epoch): decision for epoch, decision in record.rungs.items()},
        duplicate=record.duplicate_of is not None,
    )


def values_at(trial: StoredTrial, epoch: int, objectives: Sequence[str]) -> tuple[float, ...] | None:
    """A trial's values at the rung ``epoch``: those its decision there stored, else its best
    accuracy up to that epoch and its costs; None when it has not reached the rung."""
    if epoch in trial.decisions:
        return tuple(trial.decisions[epoch]["values"])
    if len(trial.curve) < epoch or any(o != ACCURACY and o not in trial.costs for o in objectives):
        return None
    best = max(trial.curve[:epoch])
    if not math.isfinite(best):
        return None
    return tuple(best if o == ACCURACY else trial.costs[o] for o in objectives)


def _competes(trial: FrozenTrial, stored: StoredTrial) -> bool:
    """Trials that count at a rung: trained here (not a reused duplicate), and not failed (a failed
    trial's retry carries its decisions instead)."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) and not stored.duplicate


def _objectives(study: optuna.Study) -> list[str]:
    names = study.metric_names
    if not names or ACCURACY not in names:
        raise ValueError(f"MOASHA needs a study whose metric names include {ACCURACY!r}; this one has {names}")
    return list(names)


def should_continue(
    study: optuna.Study, number: int, epochs_done: int, max_epochs: int, schedule: RungSchedule
) -> Decision:
    """Trial ``number``'s decision once it has trained ``epochs_done`` epochs (its ``curve`` user
    attribute holds that many accuracies). Every rung up to ``epochs_done`` not yet decided is
    decided now, in order, and stored; a stored decision is reused, not retaken. Returns the
    first stop, else the decision at ``epochs_done`` (``keep`` when it is no rung)."""
    objectives = _objectives(study)
    trials = study.get_trials(deepcopy=False)
    me = next((t for t in trials if t.number == number), None)
    if me is None:
        raise ValueError(f"no trial {number} in study {study.study_name!r}")
    mine = stored_trial(me)
    decision = Decision(number, epochs_done, True)
    for epoch in schedule.rungs(max_epochs):
        if epoch > epochs_done:
            break
        if epoch in mine.decisions:  # decided before this worker, or by this trial's failed run
            decision = Decision.from_record(epoch, mine.decisions[epoch])
        else:
            own = values_at(mine, epoch, objectives)
            if own is None:
                raise ValueError(
                    f"trial {number}: {epochs_done} epochs done but its curve holds {len(mine.curve)} "
                    f"accuracies, or a cost ({', '.join(objectives)}) is missing"
                )
            rung = {number: own}
            for other in trials:
                stored = stored_trial(other)
                if other.number != number and _competes(other, stored):
                    values = values_at(stored, epoch, objectives)
                    if values is not None:
                        rung[other.number] = values
            decision = decide(rung, number, epoch, study.directions, schedule.reduction_factor)
            decided = {**TrialRecord.of(me).rungs, str(epoch): decision.to_record()}
            TrialRecord.write_stored(study, compat.trial_id(me), rungs=decided)
            me = study.get_trials(deepcopy=False)[number]
        if not decision.keep:
            return decision
    return decision if decision.epoch == epochs_done else Decision(number, epochs_done, True)


def audit(study: optuna.Study, schedule: RungSchedule) -> list[str]:
    """Every stored decision that the rung values stored do not reproduce, one line each; empty
    when each kept trial was, at each rung, among the first ``1 / reduction_factor`` of the trials
    that had reached it, and each stopped one was not."""
    objectives = _objectives(study)
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: stored_trial(t) for t in trials}
    problems = []
    for frozen in trials:
        number = frozen.number
        for epoch, record in sorted(by_number[number].decisions.items()):
            stored = Decision.from_record(epoch, record)
            if stored.number not in (number, *retry_history(frozen)):
                problems.append(f"trial {number}, rung {epoch}: holds trial {stored.number}'s decision")
                continue
            rung = {}
            for other in stored.order:
                known = by_number.get(other)
                values = stored.values if other == stored.number else known and values_at(known, epoch, objectives)
                if not values:
                    problems.append(f"trial {number}, rung {epoch}: trial {other} was counted but has no values there")
                    break
                rung[other] = values
            else:
                again = decide(rung, stored.number, epoch, study.directions, schedule.reduction_factor)
                if (again.keep, again.order) != (stored.keep, stored.order):
                    problems.append(
                        f"trial {number}, rung {epoch}: stored {'keep' if stored.keep else 'stop'} at position "
                        f"{stored.position + 1} of {stored.considered}, the stored values give "
                        f"{'keep' if again.keep else 'stop'} at position {again.position + 1}"
                    )
    return problems
