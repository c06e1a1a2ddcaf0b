"""Everything about a sweep that can be checked before its first trial: each architecture built for
every value of every searched dimension (and the bounds of each range) on top of its ``base``,
each warm start, the data module, and the runs folder. A spec that would fail trial after trial
is refused before the study is created or its budget spent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dynsweep.sweep.config import Architecture, Dimension, SweepConfig, SweepConfigError
from dynsweep.sweep.space import preset_spec


def dimension_values(dim: Dimension) -> list[Any]:
    """The values to try of one dimension: every choice, or both bounds of a range."""
    if dim.choices is not None:
        return list(dim.choices)
    # A dimension without choices is a range (checked when the config is read).
    assert dim.low is not None and dim.high is not None
    return [int(dim.low), int(dim.high)] if dim.is_int else [float(dim.low), float(dim.high)]


def check_sweep(config: SweepConfig, runs_dir: Path) -> None:
    """Raise :class:`SweepConfigError` naming the field and value of the first thing that cannot work."""
    data = check_data(config)
    for index, arch in enumerate(config.architectures):
        check_architecture(config, index, arch, data)
    if _creatable(runs_dir):
        runs_dir.mkdir(parents=True, exist_ok=True)
    if not (runs_dir.is_dir() and os.access(runs_dir, os.W_OK | os.X_OK)):
        raise SweepConfigError(f"--runs-dir: cannot write trial directories into {runs_dir}")


def check_data(config: SweepConfig) -> Any:
    from dynsweep.tasks.recipe import make_data

    try:
        return make_data(config.data)
    except Exception as error:
        raise SweepConfigError(f"{config.source}: data: {config.data['class']} cannot be made: {error}") from None


def check_architecture(config: SweepConfig, index: int, arch: Architecture, data: Any) -> None:
    where = f"{config.source}: architectures[{index}]({arch.model})"
    _build(arch, dict(arch.base), data, f"{where}.base")
    for dim in arch.space:
        for value in dimension_values(dim):
            _build(arch, {**arch.base, dim.name: value}, data, f"{where}.space.{dim.name}: value {value!r}")
    for preset in config.warm_start:
        from dynsweep.models import get_model_entry

        entry = get_model_entry(preset)
        if (entry.baseline or entry.name) == arch.model:
            _build(arch, preset_spec(preset, arch), data, f"{config.source}: warm_start: {preset!r}")


def _build(arch: Architecture, spec: dict[str, Any], data: Any, where: str) -> None:
    """Build the network on the meta device (no memory, no weights) or fail naming ``where``."""
    import torch

    from dynsweep.models import build_model

    size = data.image_size if isinstance(data.image_size, int) else data.image_size[0]
    try:
        with torch.device("meta"):
            model = build_model(
                arch.model,
                spec,
                num_classes=data.num_classes,
                in_channels=data.in_channels,
                small_input=arch.small_input,
            )
            model.eval()(torch.empty(1, data.in_channels, size, size))
    except (ValueError, RuntimeError, TypeError) as error:
        raise SweepConfigError(f"{where}: {error}") from None


def _creatable(path: Path) -> bool:
    parent = next((p for p in [path, *path.parents] if p.exists()), None)
    return parent is not None and parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
