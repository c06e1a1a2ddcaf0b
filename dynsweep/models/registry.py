"""Model registry (timm-style): a name is enough to build any architecture or preset.

Architectures register their builder with :func:`register_model`; a preset registers a function
returning its :class:`DynamicSpec` with :func:`register_preset`, naming the architecture it
changes. :func:`build_model` resolves a name, merges the given spec and builds the network.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from dynsweep.models.spec import DynamicSpec

Builder = Callable[..., nn.Module]
SpecLike = DynamicSpec | Mapping[str, Any] | None


@dataclass(frozen=True)
class ModelEntry:
    """A registered name: its builder, its default spec, and for presets the baseline it changes."""

    name: str
    build: Builder  # build(spec, **kwargs) -> nn.Module, spec already resolved
    spec: DynamicSpec
    baseline: str | None
    doc: str

    @property
    def is_preset(self) -> bool:
        return self.baseline is not None


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0]


def _add(entry: ModelEntry) -> None:
    if entry.name in _REGISTRY or entry.name in _ALIASES:
        raise ValueError(f"model {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry


def register_model(fn: Builder) -> Builder:
    """Register an architecture builder ``fn(spec=None, **kwargs)`` under its function name."""
    _add(ModelEntry(fn.__name__, fn, DynamicSpec(), None, _first_line(fn.__doc__)))
    return fn


def register_alias(alias: str, name: str) -> None:
    """Let ``alias`` build ``name`` (not listed by :func:`list_models`)."""
    if alias in _REGISTRY or alias in _ALIASES:
        raise ValueError(f"model {alias!r} is registered twice")
    _ALIASES[alias] = name


def register_preset(baseline: str) -> Callable[[Callable[[], DynamicSpec]], Builder]:
    """Register a preset: decorate a function that returns its spec (its docstring says why).

    The decorated name becomes a builder ``preset(spec=None, **kwargs)``; a dict ``spec`` changes
    fields of the preset's spec.
    """

    def decorator(spec_fn: Callable[[], DynamicSpec]) -> Builder:
        preset_spec = spec_fn()
        base = get_model_entry(baseline)

        def builder(spec: SpecLike = None, **kwargs: Any) -> nn.Module:
            return base.build(resolve_spec(spec_fn.__name__, spec), **kwargs)

        builder.__name__ = builder.__qualname__ = spec_fn.__name__
        builder.__module__, builder.__doc__ = spec_fn.__module__, spec_fn.__doc__

        _add(ModelEntry(spec_fn.__name__, base.build, preset_spec, baseline, _first_line(spec_fn.__doc__)))
        return builder

    return decorator


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (or of the model an alias points to)."""
    name = _ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def list_models(pattern: str = "*", presets: bool = True) -> list[str]:
    """Registered names matching the glob ``pattern``, sorted (aliases are not listed)."""
    return sorted(
        e.name for e in _REGISTRY.values() if fnmatch.fnmatch(e.name, pattern) and (presets or not e.is_preset)
    )


def resolve_spec(name: str, spec: SpecLike = None) -> DynamicSpec:
    """The spec ``build_model(name, spec)`` builds with, validated and owned by the caller.

    ``None``: the registered spec (a preset's, or the static default); a dict: that spec with
    those fields changed; a :class:`DynamicSpec`: a copy of it, used as given.
    """
    if isinstance(spec, DynamicSpec):
        return DynamicSpec.from_dict(spec.to_dict())
    if spec is not None and not isinstance(spec, Mapping):
        raise ValueError(f"spec must be a dict, a DynamicSpec or None, got {type(spec).__name__}")
    return DynamicSpec.from_dict(dict(spec or {}), base=get_model_entry(name).spec)


def default_spec(name: str) -> DynamicSpec:
    """The spec ``build_model(name)`` uses: the preset's, or the static default (a copy)."""
    return resolve_spec(name)


def build_model(
    name: str,
    spec: SpecLike = None,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    ``spec``: ``None`` builds the model as registered (a preset's spec, or the static torchvision
    network); a dict changes fields of that spec (the form YAML and Optuna params take); a
    :class:`DynamicSpec` is used as given. ``small_input=True`` adapts the stem to 28 to 64 pixel
    images. Further keyword arguments go to the family's class (``output_stride``,
    ``features_only``).
    """
    return get_model_entry(name).build(
        resolve_spec(name, spec),
        num_classes=num_classes,
        in_channels=in_channels,
        small_input=small_input,
        **kwargs,
    )
