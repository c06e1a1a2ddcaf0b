"""What a sweep writes about a trial and about its study, named once.

A sweep keeps everything in the Optuna storage, as user attributes that plain
``optuna.load_study`` reads: per trial a :class:`TrialRecord`, per study a :class:`StudyRecord`.
The driver writes them, the analysis, the reports and the tests read them, all through this
module; no other module spells an attribute's name.

This module also defines, once, when two trials are *the same point* (architecture, resolved
spec, input form, training recipe and data: :func:`point_key`) and *the same training* (the same
point and the same seed: :func:`training_key`). Duplicate reuse, retries and repeated seeds all
compare trials with these two keys.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

from dynsweep import compat
from dynsweep.errors import DynsweepError

OVER_BUDGET = "dynsweep:over_budget"
"""System attribute of a trial a worker asked for over the budget in a race (told FAIL, not counted)."""

ENQUEUED_PARAMS = "fixed_params"
"""Optuna's system attribute with the params of an enqueued trial (``Study.enqueue_trial``)."""


@dataclass
class TrialRecord:
    """Everything dynsweep writes about one trial, each field a user attribute of the same name.

    ``child_params`` is what the training process was given (model, preset, spec, small_input,
    training, data, seed): enough to replay the trial.
    """

    model: str | None = None
    """The architecture (a registered model name, never a preset)."""
    preset: str | None = None
    """The warm-start preset or baseline the trial trains, None for a searched point."""
    seed: int | None = None
    dir: str | None = None
    """The trial's directory: params.json, progress.jsonl, metrics.json, logs, checkpoints."""
    child_params: dict[str, Any] | None = None
    macs: int | None = None
    params: int | None = None
    curve: list[float] = field(default_factory=list)
    """Validation accuracy after each epoch, updated while the trial trains."""
    wall_seconds: float | None = None
    infeasible: str | None = None
    """Why the trial is over a constraint (it was told PRUNED and not trained)."""
    fail_reason: str | None = None
    duplicate_of: int | None = None
    """The trial whose training this one repeated and whose values it was told."""
    stopped_at_epoch: int | None = None
    """The epoch after which the dominance rule stopped the trial (told PRUNED)."""
    stopped_at_rung: int | None = None
    """The rung (an epoch) where MOASHA stopped the trial (told PRUNED; its values there in ``rungs``)."""
    rungs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """MOASHA's decision at each rung the trial reached, by the rung's epoch (``dynsweep.sweep.moasha``)."""
    point: str | None = None
    """A digest of the trial's point (:func:`point_digest`), written as soon as it is sampled."""
    claimed: bool = False
    """True once no other trial held the same point when this one checked (it trains the point)."""
    resampled: int | None = None
    """The trial whose point this proposal repeated: told FAIL unstarted, not counted, proposed anew."""
    seeds: list[int] = field(default_factory=list)
    """The seeds of the trial's trainings, one per repeat (``repeats:`` in the spec); ``seed`` is the first."""
    seed_values: list[float | None] = field(default_factory=list)
    """Validation accuracy of each seed's training (None until it finishes); the value told to the
    study is their mean."""
    seed_dirs: list[str | None] = field(default_factory=list)
    """Each seed's training directory."""
    value_std: float | None = None
    """Standard deviation of ``seed_values`` (with two or more seeds)."""
    value_ci: list[float] | None = None
    """95% confidence interval of the mean accuracy, [low, high] (``dynsweep.stats.mean_interval``)."""
    repeat_of: int | None = None
    """A front repeat: the trial whose point this one retrains with more seeds (its seeds included)."""
    latency: dict[str, Any] | None = None
    """The measured latency of the trial's network (``dynsweep.latency.LatencyReport.to_dict``):
    median and quartiles in ms, the reference's and the ratio to it, host, device, runtime, threads."""
    worker: str | None = None
    """The worker that ran the trial: host, process id."""
    devices: list[str] | None = None
    """The devices its training processes saw (``CUDA_VISIBLE_DEVICES``), when the worker had a group."""
    sampler_seed: int | None = None
    """The seed of the sampler instance that proposed the trial (one per worker process)."""

    @classmethod
    def of(cls, trial: FrozenTrial | optuna.Trial) -> TrialRecord:
        """The record of a trial, stored or running here (missing fields are None or empty)."""
        if isinstance(trial, optuna.Trial):
            trial = trial.storage.get_trial(compat.trial_id(trial))
        attrs = trial.user_attrs
        values = {f.name: attrs[f.name] for f in _FIELDS if f.name in attrs}
        record = cls(**values)
        if record.model is None:  # studies written before the model was stored at enqueue time
            record.model = _legacy_model(trial, record)
        if record.preset is None:
            record.preset = (record.child_params or {}).get("preset") or trial.system_attrs.get(
                ENQUEUED_PARAMS, {}
            ).get("preset")
        return record

    @property
    def label(self) -> str | None:
        """The preset's name, else the architecture's."""
        return self.preset or self.model

    @classmethod
    def write(cls, trial: optuna.Trial, **values: Any) -> None:
        """Store fields of ``trial``'s record, e.g. ``TrialRecord.write(trial, seed=3, dir=...)``."""
        names = {f.name for f in _FIELDS}
        for name, value in values.items():
            if name not in names:
                raise TypeError(f"TrialRecord has no field {name!r}; fields: {', '.join(sorted(names))}")
            trial.set_user_attr(name, value)

    @classmethod
    def write_stored(cls, study: optuna.Study, trial_id: int, **values: Any) -> None:
        """Store fields of a trial known by its storage id (one this process did not ask for)."""
        for name, value in cls.as_user_attrs(**values).items():
            compat.storage_of(study).set_trial_user_attr(trial_id, name, value)

    @classmethod
    def as_user_attrs(cls, **values: Any) -> dict[str, Any]:
        """Fields as the user attributes they are stored as (for ``create_trial``/``enqueue_trial``)."""
        names = {f.name for f in _FIELDS}
        unknown = set(values) - names
        if unknown:
            raise TypeError(f"TrialRecord has no field {sorted(unknown)[0]!r}")
        return dict(values)


_FIELDS = dataclasses.fields(TrialRecord)


def _legacy_model(trial: FrozenTrial, record: TrialRecord) -> str | None:
    """The architecture of a trial from a study that did not store it at enqueue time."""
    model = (record.child_params or {}).get("model") or trial.params.get("arch")
    if model is None and record.preset is None:
        preset = trial.system_attrs.get(ENQUEUED_PARAMS, {}).get("preset")
        if preset is not None:
            from dynsweep.models import get_model_entry, list_models

            if preset in list_models():
                entry = get_model_entry(preset)
                model = entry.baseline or entry.name
    return model


def retried_trial(trial: FrozenTrial) -> int | None:
    """The number of the first trial that ``trial`` retries (a re-queued stale trial), else None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def retry_history(trial: FrozenTrial) -> list[int]:
    """The numbers of every trial ``trial`` retries, first to last."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retry_history(trial)


def enqueued_params(trial: optuna.Trial) -> dict[str, Any]:
    """The params a trial was enqueued with (a warm start, or a retry), empty for a sampled one."""
    storage = trial.storage
    return storage.get_trial_system_attrs(compat.trial_id(trial)).get(ENQUEUED_PARAMS, {})


def mark_over_budget(study: optuna.Study, trial: optuna.Trial) -> None:
    compat.storage_of(study).set_trial_system_attr(compat.trial_id(trial), OVER_BUDGET, True)


def is_over_budget(trial: FrozenTrial) -> bool:
    return bool(trial.system_attrs.get(OVER_BUDGET))


# ------------------------------------------------------------------------------------ identity
def point_key(child_params: dict[str, Any]) -> str:
    """What makes two trials the same point: architecture, resolved spec, input form, training
    recipe and data (not the seed, not a preset's name: a preset and the same searched spec are
    one point). A canonical JSON text, comparable across processes and storages."""
    from dynsweep.models import DynamicSpec

    point = {k: v for k, v in child_params.items() if k not in ("seed", "preset")}
    if "spec" in point:
        point["spec"] = DynamicSpec.from_dict(point["spec"]).to_dict()
    return json.dumps(point, sort_keys=True, default=str)


def point_digest(child_params: dict[str, Any]) -> str:
    """A short digest of :func:`point_key`, stored with each trial to find repeated points."""
    import hashlib

    return hashlib.sha256(point_key(child_params).encode()).hexdigest()[:20]


def training_key(child_params: dict[str, Any]) -> str:
    """What makes two trials the same training: the same point (:func:`point_key`) and seed."""
    return json.dumps([point_key(child_params), child_params.get("seed")])


# ------------------------------------------------------------------------------------- studies
@dataclass
class StudyRecord:
    """What dynsweep writes about a study, each field a user attribute of the same name."""

    sweep_config: dict[str, Any] | None = None
    """The spec the study was created with, in the spec file's shape (``SweepConfig.to_dict``)."""
    n_trials: int | None = None
    """The study-wide trial budget (the spec's, or ``--n-trials``; changeable)."""
    reference_point: dict[str, float] | None = None
    """The hypervolume reference point, objective -> value (one for the study's life)."""

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRecord:
        attrs = study.user_attrs
        return cls(**{f.name: attrs[f.name] for f in dataclasses.fields(cls) if f.name in attrs})

    @staticmethod
    def write(study: optuna.Study, **values: Any) -> None:
        names = {f.name for f in dataclasses.fields(StudyRecord)}
        for name, value in values.items():
            if name not in names:
                raise TypeError(f"StudyRecord has no field {name!r}; fields: {', '.join(sorted(names))}")
            study.set_user_attr(name, value)


class ReferencePointError(DynsweepError, ValueError):
    """A reference point that differs from the one the study keeps for its life."""


def store_reference_point(study: optuna.Study, point: dict[str, float]) -> None:
    """Store the study's hypervolume reference point, once: a study keeps one point for its life,
    so that its hypervolumes compare over time; a different point is a :class:`ReferencePointError`."""
    check_reference_point(study, point)
    if StudyRecord.of(study).reference_point is None:
        StudyRecord.write(study, reference_point=dict(point))


def check_reference_point(study: optuna.Study, point: dict[str, float]) -> None:
    """Raise :class:`ReferencePointError` if the study keeps a reference point other than ``point``."""
    stored = StudyRecord.of(study).reference_point
    if stored is not None and stored != point:
        raise ReferencePointError(
            f"reference_point: the study {study.study_name!r} already stores {stored}, not {point}; "
            "a study keeps one point for its life (start a new study for another)"
        )
