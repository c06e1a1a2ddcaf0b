"""A sweep study as a table: one row per trial, with its architecture, spec, objectives, state,
feasibility, front flags, seed, directory and accuracy curve; and the study's hypervolume
reference point."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import optuna
import pandas as pd

from dynsweep.analysis.pareto import AnalysisError, accuracy_objective, front_mask
from dynsweep.models import DynamicSpec, get_model_entry, list_models
from dynsweep.stats import Interval, mean_interval
from dynsweep.sweep.config import from_stored
from dynsweep.sweep.record import StudyRecord, TrialRecord, store_reference_point
from dynsweep.sweep.storage import StorageError, open_existing

SPEC_FIELDS = list(DynamicSpec().to_dict())

BASE_COLUMNS = [
    "number",
    "state",
    "arch",
    "preset",
    "label",
    "kind",
    "dynamic",
    "feasible",
    "on_front",
    "on_arch_front",
]
KINDS = ("dy", "fix", "baseline", "searched")
"""The ``kind`` column's values: a Dy or Fix preset, a plain model (a static baseline), a searched point."""

SEED_COLUMNS = ["seeds", "seed_values", "n_seeds", "value_std", "ci_low", "ci_high"]
"""Per-seed columns: each seed, its accuracy (None unfinished), how many finished, their std and
the 95% interval of their mean."""

COMPUTE_COLUMNS = ["max_epochs", "epochs_trained", "stopped", "stopped_at_rung", "stopped_at_epoch", "stopped_value"]
"""What a trial trained: its budget (``max_epochs`` per seed), the epochs it trained, and for a trial
stopped early (PRUNED and feasible) the rung (MOASHA) or epoch (dominance rule) and its accuracy there."""

LATENCY_COLUMNS = ["latency_ms", "latency_ratio"]
"""The measured latency (median ms, and its ratio to the architecture's static reference), when the
sweep measured it; the objectives' values where they are objectives, else the trial's record."""

TAIL_COLUMNS = [
    "seed",
    *SEED_COLUMNS,
    "dir",
    "curve",
    "epochs",
    *COMPUTE_COLUMNS,
    "wall_seconds",
    "infeasible",
    "fail_reason",
    "duplicate_of",
    "repeat_of",
    "point",
    "started",
    "completed",
]


def read_study(storage: str | optuna.storages.BaseStorage, study: str) -> optuna.Study:
    """Load a study to read it; a missing database, a database without Optuna's tables or a missing
    study is an AnalysisError, and nothing is created (Optuna's RDBStorage would create its schema)."""
    if isinstance(storage, str):
        try:
            storage = open_existing(storage)
        except StorageError as error:
            raise AnalysisError(str(error)) from None
    names = optuna.get_all_study_names(storage)
    if study not in names:
        raise AnalysisError(f"study: no study {study!r} in the storage; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study, storage=storage)


def load(storage: str | optuna.storages.BaseStorage, study: str) -> pd.DataFrame:
    """One row per trial of ``study`` in ``storage`` (a URL as ``dynsweep sweep`` takes, or an
    Optuna storage); see :func:`from_study` for the columns."""
    return from_study(read_study(storage, study))


def from_study(study: optuna.Study) -> pd.DataFrame:
    """The trial table of an Optuna study written by ``dynsweep sweep``, one row per trial (not
    the proposals that repeated a held point and were proposed anew: they never ran).

    Columns: number, state, arch (the architecture), preset (a warm-start name or None), label
    (preset or arch), kind ("dy"/"fix" preset, "baseline" for a plain model name, else "searched"),
    dynamic (any dynamic layer), feasible (within the constraints), on_front (over all trials),
    on_arch_front (within the architecture), one column per objective, macs and params, one per
    DynamicSpec field (lists as JSON text, so they group and compare), seed, the per-seed columns
    (seeds, seed_values: the accuracy of each seed, n_seeds: how many finished, value_std, ci_low
    and ci_high: the 95% Student-t interval of their mean, recomputed from seed_values; a trial
    without repeats has its one seed and value), dir, curve (validation accuracy per epoch),
    epochs, wall_seconds, infeasible and fail_reason (the reasons), duplicate_of (the trial whose
    result a duplicate reused), repeat_of (the trial whose point a front repeat retrains), point
    (the point's digest; in studies that did not record it, "trial N" of the trial it repeats or
    its own), started and completed; the :data:`COMPUTE_COLUMNS` (see :func:`epochs_trained`) and
    the :data:`LATENCY_COLUMNS`. ``frame.attrs`` holds the study name, the objectives with
    their directions and the stored reference point (if any).
    """
    objectives = objectives_of_study(study)
    names = list(objectives)
    records = {t.number: TrialRecord.of(t) for t in study.get_trials(deepcopy=False)}
    trials = [t for t in study.get_trials(deepcopy=False) if records[t.number].resampled is None]
    accuracy = accuracy_objective(objectives)
    study_record = StudyRecord.of(study)
    budgets = _budgets(study_record.sweep_config)
    rows = [_row(trial, records, names, accuracy, budgets) for trial in trials]
    columns = BASE_COLUMNS + [n for n in names if n not in ("macs", "params")] + ["macs", "params"]
    columns += [c for c in LATENCY_COLUMNS if c not in names] + SPEC_FIELDS + TAIL_COLUMNS
    frame = pd.DataFrame(rows, columns=columns)
    for name in ("macs", "params", *LATENCY_COLUMNS, *names):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    frame.attrs.update(study=study.study_name, objectives=objectives)
    stored = study_record.reference_point
    if stored is not None:
        frame.attrs["reference_point"] = dict(stored)
    frame["on_front"] = front_mask(frame, objectives)
    frame["on_arch_front"] = front_mask(frame, objectives, by="arch")
    return frame


def objectives_of_study(study: optuna.Study) -> dict[str, str]:
    """Objective name -> direction; unnamed objectives are ``objective_0``, ``objective_1``..."""
    directions = [d.name.lower() for d in study.directions]
    names = study.metric_names or [f"objective_{i}" for i in range(len(directions))]
    return dict(zip(names, directions))


def _row(
    trial: optuna.trial.FrozenTrial,
    records: dict[int, TrialRecord],
    names: list[str],
    accuracy: str | None,
    budgets: dict[str | None, int | None],
) -> dict[str, Any]:
    record = records[trial.number]
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "arch": record.model,
        "preset": record.preset,
        "label": record.label,
        "kind": _kind(record.preset),
        "feasible": record.infeasible is None,
        "macs": record.macs,
        "params": record.params,
    }
    if record.latency:
        row.update(latency_ms=record.latency.get("median_ms"), latency_ratio=record.latency.get("ratio"))
    if trial.values is not None:
        row.update(zip(names, trial.values))
    spec = (record.child_params or {}).get("spec")
    if spec is not None:
        resolved = DynamicSpec.from_dict(spec)
        row["dynamic"] = not resolved.is_static
        row.update({k: _hashable(v) for k, v in resolved.to_dict().items()})
    seeds, seed_values = _seed_values(trial, record, names.index(accuracy) if accuracy else None)
    interval = mean_interval(seed_values)
    row.update(
        seed=record.seed,
        seeds=seeds,
        seed_values=seed_values,
        **_interval_columns(interval),
        dir=record.dir,
        curve=list(record.curve),
        epochs=len(record.curve),
        **_compute(
            trial,
            record,
            records.get(record.repeat_of) if record.repeat_of is not None else None,
            names,
            accuracy,
            budgets.get(record.model, budgets.get(None)),
        ),
        wall_seconds=record.wall_seconds,
        infeasible=record.infeasible,
        fail_reason=record.fail_reason,
        duplicate_of=record.duplicate_of,
        repeat_of=record.repeat_of,
        point=_point(trial.number, records),
        started=trial.datetime_start,
        completed=trial.datetime_complete,
    )
    return row


def _interval_columns(interval: Interval) -> dict[str, Any]:
    """A row's seed-noise columns: the number of seeds, their spread and the mean's interval."""
    return {"n_seeds": interval.n, "value_std": interval.std, "ci_low": interval.low, "ci_high": interval.high}


def _budgets(sweep_config: dict[str, Any] | None) -> dict[str | None, int | None]:
    """Architecture -> the max_epochs its trials train per seed in the stored spec (None: any other)."""
    if not sweep_config:
        return {}
    config = from_stored(sweep_config)
    budgets: dict[str | None, int | None] = {None: config.training.get("max_epochs")}
    for arch in config.architectures:
        budgets[arch.model] = config.training_for(arch.model).get("max_epochs")
    return budgets


def _compute(
    trial: optuna.trial.FrozenTrial,
    record: TrialRecord,
    original: TrialRecord | None,
    names: list[str],
    accuracy: str | None,
    budget: int | None,
) -> dict[str, Any]:
    """The trial's :data:`COMPUTE_COLUMNS`; ``original``: the record of the trial it repeats, if any;
    ``budget``: its architecture's max_epochs in the stored spec."""
    training = (record.child_params or {}).get("training") or {}
    max_epochs = training.get("max_epochs", budget)
    stopped = trial.state.name == "PRUNED" and record.infeasible is None
    at = None
    if stopped:
        at = record.stopped_at_rung or record.stopped_at_epoch or len(record.curve) or None
    value = None
    if at is not None and accuracy is not None:
        decision = record.rungs.get(str(at)) if record.stopped_at_rung is not None else None
        if decision is not None and len(decision.get("values", [])) == len(names):
            value = float(decision["values"][names.index(accuracy)])
        elif record.curve[:at]:
            value = float(max(record.curve[:at]))
    return dict(
        max_epochs=max_epochs,
        epochs_trained=epochs_trained(record, original, max_epochs),
        stopped=stopped,
        stopped_at_rung=record.stopped_at_rung if stopped else None,
        stopped_at_epoch=at if stopped else None,
        stopped_value=value,
    )


def epochs_trained(record: TrialRecord, original: TrialRecord | None, max_epochs: int | None) -> int:
    """Epochs a trial trained itself: its first seed's curve, plus for each further seed it finished
    ``max_epochs`` (its curve's length when unknown); a front repeat counts only the seeds it added
    to its ``original``'s, and a duplicate that reused a result or an infeasible trial none."""
    if record.duplicate_of is not None or record.infeasible is not None:
        return 0
    inherited = set() if original is None else {k for k, v in enumerate(original.seed_values) if v is not None}
    first = 0 if 0 in inherited else len(record.curve)
    per_seed = max_epochs if max_epochs is not None else len(record.curve)
    further = sum(1 for k, v in enumerate(record.seed_values) if k > 0 and v is not None and k not in inherited)
    return first + further * per_seed


def _seed_values(
    trial: optuna.trial.FrozenTrial, record: TrialRecord, accuracy: int | None
) -> tuple[list[int], list[float | None]]:
    """Each seed and its accuracy: the record's, else the trial's one seed and value."""
    if record.seed_values:
        return list(record.seeds), list(record.seed_values)
    seeds = list(record.seeds) or ([record.seed] if record.seed is not None else [])
    known = trial.values is not None and accuracy is not None
    return seeds, [trial.values[accuracy]] if known else []


def _point(number: int, records: dict[int, TrialRecord]) -> str:
    """The trial's point digest; without one (older studies), that of the trial it duplicates or
    repeats, else "trial N" for its own."""
    seen = set()
    while number not in seen:
        seen.add(number)
        record = records.get(number)
        if record is None:
            break
        if record.point is not None:
            return record.point
        origin = record.duplicate_of if record.duplicate_of is not None else record.repeat_of
        if origin is None:
            break
        number = origin
    return f"trial {number}"


def _kind(preset: str | None) -> str:
    if preset is None:
        return "searched"
    if preset in list_models() and not get_model_entry(preset).is_preset:
        return "baseline"
    return preset.split("_", 1)[0]  # "dy" or "fix"


def _hashable(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def stored_reference_point(study: optuna.Study) -> dict[str, float] | None:
    """The reference point stored in the study (from the sweep spec, or :func:`set_reference_point`)."""
    stored = StudyRecord.of(study).reference_point
    return None if stored is None else {k: float(v) for k, v in stored.items()}


def set_reference_point(study: optuna.Study, point: dict[str, float]) -> dict[str, float]:
    """Store ``point`` (one value per objective) as the study's hypervolume reference point.

    A study keeps one point for its life, so that its hypervolumes compare over time: a different
    point than the one stored is an error. Give every study you compare the same point.
    """
    names = list(objectives_of_study(study))
    if set(point) != set(names):
        raise AnalysisError(
            f"reference_point: needs exactly one value per objective ({', '.join(names)}), got {sorted(point)}"
        )
    point = {name: float(point[name]) for name in names}
    store_reference_point(study, point)
    return point


def reference_point(study: optuna.Study, frame: pd.DataFrame | None = None) -> dict[str, float]:
    """The study's stored reference point; without one, a point derived from its trials (not stored).

    Derived: 0 for a maximized accuracy, and for a minimized cost the spec's constraint, else
    1.1 x the costliest trial so far (rounded up to two significant digits). A derived point moves
    as the study grows, so its hypervolumes compare only within one reading: store a point (the
    spec's ``reference_point``, ``sweep pareto --reference-point`` or :func:`set_reference_point`)
    to compare over time and across studies.
    """
    objectives = objectives_of_study(study)
    stored = stored_reference_point(study)
    if stored is not None and set(stored) == set(objectives):
        return {name: stored[name] for name in objectives}
    frame = from_study(study) if frame is None else frame
    stored_config = StudyRecord.of(study).sweep_config
    limits = from_stored(stored_config).constraints.limits() if stored_config else {}
    point: dict[str, float] = {}
    for name, direction in objectives.items():
        values = frame[name].dropna()  # costs are known before training: running trials count too
        if direction == "maximize":
            point[name] = 0.0 if values.empty or values.min() >= 0 else _round_away(values.min() * 1.1)
        elif limits.get(name) is not None:
            point[name] = float(limits[name])
        elif not values.empty:
            point[name] = _round_away(values.max() * 1.1)
        else:
            raise AnalysisError(f"reference_point: no finished trial yet to derive the {name} reference from")
    return point


def _objective_value(index: int) -> Callable[[optuna.trial.FrozenTrial], float]:
    """The target of an importance: the trial's ``index``-th value."""
    return lambda trial: float(trial.values[index])


def _round_away(value: float) -> float:
    """``value`` rounded away from zero to two significant digits (1.1e8 * 1.1 -> 1.3e8)."""
    if value == 0:
        return 0.0
    exponent = math.floor(math.log10(abs(value))) - 1
    digits = math.ceil(round(abs(value) / 10**exponent, 9))  # 3e6 * 1.1 is 3.3000000000000003e6
    return math.copysign(float(f"{digits}e{exponent}"), value)


def param_importances(study: optuna.Study, frame: pd.DataFrame | None = None, min_trials: int = 4) -> pd.DataFrame:
    """Optuna's fANOVA importance of each searched spec parameter, per architecture and objective.

    Columns arch, objective, param (without the ``<arch>.`` prefix), importance (sums to 1 per
    arch and objective). Only searched, feasible, finished trials count (presets lack the
    searched params); an architecture with fewer than ``min_trials`` of them, or an objective that
    does not vary among them, is left out.
    """
    frame = from_study(study) if frame is None else frame
    names = list(frame.attrs["objectives"])
    wanted = set(frame[(frame["state"] == "COMPLETE") & frame["feasible"] & (frame["kind"] == "searched")]["number"])
    trials = [
        t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]) if t.number in wanted
    ]
    arch_of = dict(zip(frame["number"], frame["arch"]))
    rows = []
    for arch in sorted({arch_of[t.number] for t in trials}):
        subset = [t for t in trials if arch_of[t.number] == arch]
        varying = {k for t in subset for k in t.params if len({str(s.params.get(k)) for s in subset}) > 1}
        if len(subset) < min_trials or not varying:
            continue
        sub_study = optuna.create_study(directions=study.directions)
        sub_study.add_trials(subset)
        for index, objective in enumerate(names):
            if len({t.values[index] for t in subset}) < 2:
                continue  # fANOVA has nothing to attribute (and raises on zero variance)
            scores = optuna.importance.get_param_importances(
                sub_study,
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                params=sorted(varying),
                target=_objective_value(index),
            )
            rows += [
                {"arch": arch, "objective": objective, "param": p.split(".", 1)[-1], "importance": v}
                for p, v in scores.items()
            ]
    return pd.DataFrame(rows, columns=["arch", "objective", "param", "importance"])
