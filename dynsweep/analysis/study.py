"""A sweep study as a table: one row per trial, with its architecture, spec, objectives, state,
feasibility, front flags, seed, directory and accuracy curve; and the study's hypervolume
reference point."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from dynsweep.analysis.pareto import AnalysisError, front_mask
from dynsweep.models import DynamicSpec, get_model_entry, list_models
from dynsweep.sweep.driver import make_storage

REFERENCE_POINT = "reference_point"
"""Study user attribute holding the hypervolume reference point, objective -> value."""

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
TAIL_COLUMNS = ["seed", "dir", "curve", "epochs", "wall_seconds", "infeasible", "fail_reason", "started", "completed"]


def open_study(storage: str | optuna.storages.BaseStorage, study: str) -> optuna.Study:
    """Load a study for reading; a missing database or study is an error, never created."""
    if isinstance(storage, str):
        if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///") :]).is_file():
            raise AnalysisError(f"storage: no study database at {storage[len('sqlite:///'):]}")
        if storage.startswith("journal:") and not Path(storage[len("journal:") :]).is_file():
            raise AnalysisError(f"storage: no journal file at {storage[len('journal:'):]}")
        try:
            storage = make_storage(storage)
        except Exception as error:  # noqa: BLE001 - any driver error: say which URL
            raise AnalysisError(f"storage: cannot open {storage}: {error}") from None
    names = optuna.get_all_study_names(storage)
    if study not in names:
        raise AnalysisError(f"study: no study {study!r} in the storage; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study, storage=storage)


def load(storage: str | optuna.storages.BaseStorage, study: str) -> pd.DataFrame:
    """One row per trial of ``study`` in ``storage`` (a URL as ``dynsweep sweep`` takes, or an
    Optuna storage); see :func:`from_study` for the columns."""
    return from_study(open_study(storage, study))


def from_study(study: optuna.Study) -> pd.DataFrame:
    """The trial table of an Optuna study written by ``dynsweep sweep``.

    Columns: number, state, arch (the architecture), preset (a warm-start name or None), label
    (preset or arch), kind ("dy"/"fix" preset, "baseline" for a plain model name, else "searched"),
    dynamic (any dynamic layer), feasible (within the constraints), on_front (over all trials),
    on_arch_front (within the architecture), one column per objective, macs and params, one per
    DynamicSpec field (lists as JSON text, so they group and compare), seed, dir, curve (validation
    accuracy per epoch), epochs, wall_seconds, infeasible and fail_reason (the reasons), started
    and completed. ``frame.attrs`` holds the study name, the objectives with their directions and
    the stored reference point (if any).
    """
    directions = [d.name.lower() for d in study.directions]
    names = study.metric_names or [f"objective_{i}" for i in range(len(directions))]
    objectives = dict(zip(names, directions))
    rows = [_row(trial, names) for trial in study.get_trials(deepcopy=False)]
    columns = BASE_COLUMNS + [n for n in names if n not in ("macs", "params")] + ["macs", "params"]
    columns += SPEC_FIELDS + TAIL_COLUMNS
    frame = pd.DataFrame(rows, columns=columns)
    for name in ("macs", "params", *names):
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    frame.attrs.update(study=study.study_name, objectives=objectives)
    if REFERENCE_POINT in study.user_attrs:
        frame.attrs[REFERENCE_POINT] = dict(study.user_attrs[REFERENCE_POINT])
    frame["on_front"] = front_mask(frame, objectives)
    frame["on_arch_front"] = front_mask(frame, objectives, by="arch")
    return frame


def _row(trial: optuna.trial.FrozenTrial, names: list[str]) -> dict[str, Any]:
    attrs = trial.user_attrs
    child = attrs.get("child_params") or {}
    preset = attrs.get("preset") or trial.system_attrs.get("fixed_params", {}).get("preset")
    arch = attrs.get("model") or trial.params.get("arch") or child.get("model")
    if arch is None and preset in list_models():
        entry = get_model_entry(preset)
        arch = entry.baseline or entry.name
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "arch": arch,
        "preset": preset,
        "label": preset or arch,
        "kind": _kind(preset),
        "feasible": "infeasible" not in attrs,
        "macs": attrs.get("macs"),
        "params": attrs.get("params"),
    }
    if trial.values is not None:
        row.update(zip(names, trial.values))
    spec = child.get("spec")
    if spec is not None:
        resolved = DynamicSpec.from_dict(spec)
        row["dynamic"] = not resolved.is_static
        row.update({k: _hashable(v) for k, v in resolved.to_dict().items()})
    curve = attrs.get("curve") or []
    row.update(
        seed=attrs.get("seed"),
        dir=attrs.get("dir"),
        curve=list(curve),
        epochs=len(curve),
        wall_seconds=attrs.get("wall_seconds"),
        infeasible=attrs.get("infeasible"),
        fail_reason=attrs.get("fail_reason"),
        started=trial.datetime_start,
        completed=trial.datetime_complete,
    )
    return row


def _kind(preset: str | None) -> str:
    if preset is None:
        return "searched"
    if preset in list_models() and not get_model_entry(preset).is_preset:
        return "baseline"
    return preset.split("_", 1)[0]  # "dy" or "fix"


def _hashable(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def reference_point(study: optuna.Study, frame: pd.DataFrame | None = None) -> dict[str, float]:
    """The study's hypervolume reference point, fixed the first time it is asked for.

    A sweep spec's ``reference_point`` is stored when the study is created. Otherwise it is set
    here, once, and stored: 0 for a maximized accuracy, and for a minimized cost the spec's
    constraint or else 1.1 x the costliest trial so far (two significant digits). Stored, it
    stays the same as the study grows, so hypervolumes compare over time.
    """
    stored = study.user_attrs.get(REFERENCE_POINT)
    names = study.metric_names or []
    if stored is not None and set(stored) >= set(names):
        return {name: float(stored[name]) for name in names}
    frame = from_study(study) if frame is None else frame
    config = study.user_attrs.get("sweep_config") or {}
    limits = {"macs": config.get("max_macs"), "params": config.get("max_params")}
    point: dict[str, float] = {}
    for name, direction in zip(names, (d.name.lower() for d in study.directions)):
        values = frame[name].dropna() if name in frame.columns else pd.Series(dtype=float)
        if direction == "maximize":
            point[name] = 0.0 if values.empty or values.min() >= 0 else _round_away(values.min() * 1.1)
        elif limits.get(name) is not None:
            point[name] = float(limits[name])
        elif not values.empty:
            point[name] = _round_away(values.max() * 1.1)
        else:
            raise AnalysisError(f"reference_point: no finished trial yet to fix the {name} reference from")
    study.set_user_attr(REFERENCE_POINT, point)
    return point


def _round_away(value: float) -> float:
    """``value`` rounded away from zero to two significant digits (1.1e8 * 1.1 -> 1.3e8)."""
    if value == 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(abs(value))) - 1)
    return math.copysign(math.ceil(abs(value) / scale) * scale, value)


def param_importances(study: optuna.Study, frame: pd.DataFrame | None = None, min_trials: int = 4) -> pd.DataFrame:
    """Optuna's fANOVA importance of each searched spec parameter, per architecture and objective.

    Columns arch, objective, param (without the ``<arch>.`` prefix), importance (sums to 1 per
    arch and objective). Only searched, feasible, finished trials count (presets lack the
    searched params); an architecture with fewer than ``min_trials`` of them is left out.
    """
    frame = from_study(study) if frame is None else frame
    names = list(frame.attrs["objectives"])
    wanted = set(frame[(frame["state"] == "COMPLETE") & frame["feasible"] & (frame["kind"] == "searched")]["number"])
    trials = [t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]) if t.number in wanted]
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
            scores = optuna.importance.get_param_importances(
                sub_study,
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                params=sorted(varying),
                target=lambda t, i=index: t.values[i],
            )
            rows += [
                {"arch": arch, "objective": objective, "param": p.split(".", 1)[-1], "importance": v}
                for p, v in scores.items()
            ]
    return pd.DataFrame(rows, columns=["arch", "objective", "param", "importance"])
