"""The study of a sweep: created (or resumed) from a spec with named objectives, the spec and the
budget stored in it, warm starts enqueued; loaded by workers and readers from the storage alone.

Budget: every trial counts (COMPLETE, PRUNED, FAIL, RUNNING) whatever its number of seeds, except
a failed trial that was re-queued (its retry counts instead), a trial a worker started over the
budget in a race (told FAIL and marked over budget), a proposal that repeated a held point (made
anew) and the front repeats that run after the budget is spent.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dynsweep.errors import DynsweepError
from dynsweep.sweep.config import FIXED_FIELDS, OBJECTIVES, SweepConfig, from_stored, spec_differences
from dynsweep.sweep.record import (
    StudyRecord,
    TrialRecord,
    check_reference_point,
    is_over_budget,
    retry_history,
    store_reference_point,
)
from dynsweep.sweep.storage import make_storage, open_existing

# Heartbeats, metric names and the journal are "experimental" in Optuna's terms; we rely on them
# deliberately, and run heartbeats with ask/tell (the heartbeat thread is started per trial).
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


class SweepError(DynsweepError, RuntimeError):
    """A sweep that cannot run as asked (storage, study); the message says what to do instead."""


def make_sampler(config: SweepConfig, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded with ``seed`` (default: the spec's seed)."""
    options = {"seed": config.seed if seed is None else seed, **config.sampler.options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if config.sampler.name == "nsga2":
            return optuna.samplers.NSGAIISampler(**options)
        if config.sampler.name == "tpe":
            return optuna.samplers.TPESampler(**options)
        if config.sampler.name == "gp":
            return optuna.samplers.GPSampler(**options)
        return optuna.samplers.RandomSampler(**options)


def open_study(
    config: SweepConfig, url: str, study_name: str | None = None, n_trials: int | None = None
) -> tuple[optuna.Study, SweepConfig]:
    """Create the study, or resume it with a spec that agrees with the stored one; store the spec
    and budget in it and enqueue the warm start. Returns the study and the spec every worker runs
    (the stored one, with the changeable fields of ``config``).

    A spec whose fixed fields (:data:`~dynsweep.sweep.config.FIXED_FIELDS`) differ from the
    stored spec is a :class:`SweepError` listing each difference, before anything is written.
    """
    name = study_name or config.name
    study = optuna.create_study(
        storage=make_storage(url, config.storage),
        study_name=name,
        directions=[OBJECTIVES[o] for o in config.objectives],
        sampler=make_sampler(config),
        load_if_exists=True,
    )
    stored = StudyRecord.of(study)
    given = config.to_dict()
    if stored.reference_point is not None and config.reference_point is not None:
        check_reference_point(study, config.reference_point)
    if stored.sweep_config is not None:
        before = from_stored(stored.sweep_config).to_dict()
        fixed = tuple(f for f in FIXED_FIELDS if f != "reference_point")  # checked above, by its own rule
        differences = spec_differences(before, given, fixed)
        if differences:
            raise SweepError(
                f"{config.source}: the spec differs from the one study {name!r} was created with, in fields "
                f"fixed for a study's life: {'; '.join(differences)}. Restore them, or start a new study "
                "(--study NEW_NAME, or a new name: in the spec)"
            )
        if before["budget"]["n_trials"] != given["budget"]["n_trials"] and n_trials is None:
            n_trials = config.budget.n_trials
    if study.metric_names != config.objectives:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(config.objectives))
    StudyRecord.write(study, sweep_config=given)
    if config.reference_point is not None:
        store_reference_point(study, config.reference_point)
    if n_trials is not None or stored.n_trials is None:
        StudyRecord.write(study, n_trials=n_trials if n_trials is not None else config.budget.n_trials)
    enqueue_warm_start(study, config)
    return study, config


def enqueue_warm_start(study: optuna.Study, config: SweepConfig) -> None:
    """Enqueue each warm-start preset once, its architecture and preset in its record already."""
    from dynsweep.models import get_model_entry

    for preset in config.warm_start:
        entry = get_model_entry(preset)
        model = entry.baseline or entry.name
        params: dict[str, Any] = {"preset": preset}
        if len(config.architectures) > 1:
            params = {"arch": model, **params}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.enqueue_trial(
                params, user_attrs=TrialRecord.as_user_attrs(model=model, preset=preset), skip_if_exists=True
            )


def load_study(url: str, study_name: str) -> tuple[optuna.Study, SweepConfig]:
    """A study written by :func:`open_study`, with its spec (``sweep worker/status/replay``).

    Opens the storage without creating anything: a missing file or study is an error naming it.
    """
    storage = open_existing(url)
    names = optuna.get_all_study_names(storage)
    if study_name not in names:
        raise SweepError(f"study: no study {study_name!r} in {url}; studies there: {', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=study_name, storage=storage)
    raw = StudyRecord.of(study).sweep_config
    if raw is None:
        raise SweepError(f"study {study_name!r} in {url} was not made by dynsweep sweep (no sweep_config)")
    config = from_stored(raw)
    study = optuna.load_study(
        study_name=study_name, storage=make_storage(url, config.storage), sampler=make_sampler(config)
    )
    return study, config


def counted_trials(study: optuna.Study) -> tuple[list[FrozenTrial], int]:
    """(trials that count against the budget, WAITING trials)."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in retry_history(t)}
    counted = [
        t
        for t in trials
        if t.state != TrialState.WAITING and t.number not in retried and not is_over_budget(t) and _counts(t)
    ]
    return counted, sum(t.state == TrialState.WAITING for t in trials)


def _counts(trial: FrozenTrial) -> bool:
    """Neither a proposal made anew (it never ran) nor a front repeat (a phase after the budget)."""
    record = TrialRecord.of(trial)
    return record.resampled is None and record.repeat_of is None


def budget(study: optuna.Study, config: SweepConfig) -> int:
    stored = StudyRecord.of(study).n_trials
    return int(stored if stored is not None else config.budget.n_trials)


def trial_dir(runs_dir: Path, study: optuna.Study, number: int) -> Path:
    """Where trial ``number`` of ``study`` trains: ``RUNS_DIR/<study>/trial_NNNN``."""
    return runs_dir / study.study_name / f"trial_{number:04d}"
