"""Multi-objective early stopping: Optuna's pruners take one objective, a Pareto sweep has two.

The rule: after epoch ``e`` (from ``warmup_epochs`` on), a trial is stopped when at least
``min_dominating`` other trials (finished, or still running) were, at that same epoch, at least
as accurate *and* at most as costly (MACs), better in one of the two. Such a trial is unlikely
to reach the front: it would have to overtake all of them in accuracy over its remaining epochs.
It helps when many trials are long (several epochs) and the accuracy ranking settles early; with
one or two epochs per trial it saves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from optuna.trial import FrozenTrial, TrialState

from dynsweep.sweep.record import TrialRecord


def dominated_count(others: Iterable[FrozenTrial], epoch: int, acc: float, macs: float) -> int:
    count = 0
    for other in others:
        record = TrialRecord.of(other)
        curve, other_macs = record.curve, record.macs
        if other.state not in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED):
            continue
        if not curve or other_macs is None or len(curve) <= epoch:
            continue
        other_acc = curve[epoch]
        if other_acc >= acc and other_macs <= macs and (other_acc > acc or other_macs < macs):
            count += 1
    return count


def should_stop(
    others: Iterable[FrozenTrial],
    number: int,
    epoch: int,
    acc: float,
    macs: float,
    min_dominating: int,
    warmup_epochs: int,
) -> bool:
    if epoch < warmup_epochs:
        return False
    return dominated_count((t for t in others if t.number != number), epoch, acc, macs) >= min_dominating
