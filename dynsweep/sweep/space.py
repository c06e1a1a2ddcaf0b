"""Define-by-run search space: a trial asks ``trial.suggest_*`` for one architecture's dimensions
and the answers become a DynamicSpec dict.

Param names: ``arch`` (the architecture, when there are several) and ``<model>.<field>``.
Categorical choices that Optuna cannot store (lists such as ``stages: [2, 3]``) are stored as
their JSON text and decoded here, so ``trial.params`` stays readable in the study.
"""

from __future__ import annotations

import json
from typing import Any

import optuna

from dynsweep.sweep.config import Architecture, Dimension, SweepConfig


def encode_choice(value: Any) -> Any:
    """A categorical choice as Optuna stores it (lists and mappings as their JSON text)."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def _decode(dim: Dimension, value: Any) -> Any:
    for choice in dim.choices or []:
        if encode_choice(choice) == value:
            return choice
    return value


def suggest_dimension(trial: optuna.Trial, model: str, dim: Dimension) -> Any:
    name = f"{model}.{dim.name}"
    if dim.choices is not None:
        return _decode(dim, trial.suggest_categorical(name, [encode_choice(c) for c in dim.choices]))
    # A dimension without choices is a range (checked when the config is read).
    assert dim.low is not None and dim.high is not None
    if dim.is_int:
        return trial.suggest_int(name, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log)
    return trial.suggest_float(name, float(dim.low), float(dim.high), step=dim.step, log=dim.log)


def suggest_architecture(trial: optuna.Trial, config: SweepConfig) -> str:
    models = [a.model for a in config.architectures]
    return trial.suggest_categorical("arch", models) if len(models) > 1 else models[0]


def suggest_spec(trial: optuna.Trial, arch: Architecture) -> dict[str, Any]:
    """The arch's fixed ``base`` fields with the searched ones on top: a DynamicSpec dict."""
    spec = dict(arch.base)
    for dim in arch.space:
        spec[dim.name] = suggest_dimension(trial, arch.model, dim)
    return spec


def preset_spec(preset: str, arch: Architecture) -> dict[str, Any]:
    """A warm-start preset's full spec, with the arch's fixed ``base`` fields (e.g. width) on top."""
    from dynsweep.models import default_spec

    return {**default_spec(preset).to_dict(), **arch.base}


def trial_params(
    config: SweepConfig, model: str, preset: str | None, spec: dict[str, Any], seed: int | None
) -> dict[str, Any]:
    """What a trial's training process is given (``TrialRecord.child_params``): everything needed
    to train, and to replay, one point with one seed."""
    arch = config.architecture(model)
    return {
        "model": model,
        "preset": preset,
        "spec": spec,
        "small_input": arch.small_input,
        "training": config.training_for(model),
        "data": config.data,
        "seed": seed,
    }
