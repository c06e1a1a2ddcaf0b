"""No point searched twice: a proposal that repeats a point already in the study (finished,
running or waiting) is proposed anew, and a finite space is covered before any point repeats.

Two workers can sample the same point at the same moment. Each writes its point's digest into its
record first, then looks: it yields if an earlier trial, or one that has already claimed the
point, holds the same point; otherwise it claims the point. Of two trials racing for one point at
most one claims it, whatever the order of their writes and reads.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from dynsweep.sweep.config import Dimension, SweepConfig
from dynsweep.sweep.record import TrialRecord, point_digest
from dynsweep.sweep.space import encode_choice, trial_params

HELD = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
"""States of a trial that holds its point: finished (an infeasible or early-stopped point would
end the same way again), running or queued. A failed trial gives its point back."""


def holder(study: optuna.Study, trial: optuna.Trial, digest: str) -> FrozenTrial | None:
    """Write ``trial``'s point digest; return another trial that holds the same point, or None
    after claiming the point for ``trial``."""
    TrialRecord.write(trial, point=digest)
    for other in study.get_trials(deepcopy=False, states=HELD):
        if other.number == trial.number:
            continue
        record = TrialRecord.of(other)
        if record.point == digest and (
            other.number < trial.number or record.claimed or other.state != TrialState.RUNNING
        ):
            return other
    TrialRecord.write(trial, claimed=True)
    return None


def finite_values(dim: Dimension) -> list[Any] | None:
    """Every value of a dimension, or None for a continuous range."""
    if dim.choices is not None:
        return list(dim.choices)
    # A dimension without choices is a range (checked when the config is read).
    assert dim.low is not None and dim.high is not None
    if dim.is_int and not dim.log:
        return list(range(int(dim.low), int(dim.high) + 1, int(dim.step or 1)))
    if dim.step is not None and not dim.log:
        count = round((dim.high - dim.low) / dim.step)
        return [dim.low + i * dim.step for i in range(count + 1)]
    return None


def space_points(config: SweepConfig) -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
    """Every searched point of a finite space as (Optuna params to enqueue, the training params
    without a seed); None when a dimension is continuous."""
    points = []
    for arch in config.architectures:
        values = [finite_values(dim) for dim in arch.space]
        if any(v is None for v in values):
            return None
        for combination in itertools.product(*cast("list[list[Any]]", values)):  # none is None
            spec = {**arch.base, **{dim.name: value for dim, value in zip(arch.space, combination)}}
            params = {f"{arch.model}.{dim.name}": encode_choice(v) for dim, v in zip(arch.space, combination)}
            if len(config.architectures) > 1:
                params = {"arch": arch.model, **params}
            points.append((params, trial_params(config, arch.model, None, spec, seed=None)))
    return points


def untried_points(study: optuna.Study, config: SweepConfig) -> list[dict[str, Any]] | None:
    """The Optuna params of every point of a finite space that no trial holds; None if infinite."""
    points = space_points(config)
    if points is None:
        return None
    held = {TrialRecord.of(t).point for t in study.get_trials(deepcopy=False, states=HELD)}
    return [params for params, training in points if point_digest(training) not in held]


def enqueue_untried(study: optuna.Study, config: SweepConfig, rng: random.Random) -> bool:
    """Enqueue one untried point of a finite space, chosen by ``rng``; False when none is left."""
    untried = untried_points(study, config)
    if not untried:
        return False
    study.enqueue_trial(rng.choice(untried))
    return True
