"""DynamicSpec: the dimensions a sweep searches, as one dataclass that round-trips through a dict.

A spec says *where* a network is dynamic (stages, blocks, convolution roles), *how* (bases,
coefficient mode, predictor width and scope) and *how wide* it is (multipliers, DyNet's reduction
of the channels of dynamic stages, the block changes of the DyNet paper). The default spec is the
static torchvision network.

Field values are checked when the spec is made (and again when a model is built from it); what
depends on the architecture (a stage that does not exist, a width that rounds to zero channels,
groups that do not divide) is checked when the model is built. Every error is a ``ValueError``
whose message starts with ``DynamicSpec.<field>``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynsweep.nn import COEFFICIENT_MODES, check_reduction

ROLES = ("pointwise", "depthwise", "full")
"""Convolution roles: 1x1 with groups=1, any grouped (depthwise) conv, k x k (k > 1) with groups=1."""

PREDICTOR_SCOPES = ("block", "layer")
"""``block``: one predictor per block, fed by the block input (the paper); ``layer``: one per layer."""


def _fail(name: str, message: str) -> ValueError:
    return ValueError(f"DynamicSpec.{name}: {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class DynamicSpec:
    """What is dynamic in a network, and how wide the network is.

    Placement:
        stages: indices of the dynamic stages (a stage is a run of blocks with one output width,
            a row of the architecture's table), or ``"all"``. Empty (the default): static network.
        blocks: indices of the dynamic blocks inside each dynamic stage (negative counts from
            the end); ``None``: every block. Every index must exist in every dynamic stage.
        roles: which convolutions of a dynamic block are dynamic: ``"pointwise"`` (1x1),
            ``"depthwise"`` (grouped) and ``"full"`` (k x k, groups=1).
        stem: make the first convolution dynamic (its own single-layer predictor).
        classifier: make the layers after the last stage dynamic: the final 1x1 convolution of
            the MobileNets and ShuffleNet and the Linear layers (each with its own predictor).
    Dynamic layers:
        num_bases: kernel bases ``g`` per dynamic layer, one value or one per stage.
        mode: coefficient mode, ``"dynet"``, ``"condconv"`` or ``"dyconv"``.
        temperature: initial softmax temperature of ``"dyconv"``.
        static_kernels: build the dynamic layers as plain convolutions with the same channels
            and no predictor: the paper's Fix-* ablation.
    Predictor:
        reduction: hidden width of the predictor's MLP as ``in_channels // reduction``, one value
            or one per stage; ``None`` means a single linear layer.
        predictor_scope: ``"block"`` (one predictor per block reading the block input, the
            paper's design) or ``"layer"`` (one per dynamic layer, reading that layer's input).
    Channels:
        width_mult: global channel multiplier (torchvision's ``width_mult``).
        stage_widths: per-stage channel multipliers, or ``None``.
        dynamic_width: DyNet's reduction of the output channels of dynamic layers: the channels
            of every dynamic stage are multiplied by it (a stage shares one residual width, so the
            whole stage shrinks). Placement decides where it applies, also with static_kernels.
        channel_multiple: stage channels are rounded to a multiple of this (torchvision's rule:
            nearest, never more than 10% down); ``None``: the family's (8 for the MobileNets,
            2 for ShuffleNetV2, 1 for ResNet).
        expansion: mobile blocks only: the hidden width as a multiple of the block's output
            channels, with all three convolutions present; ``None`` keeps the table's expansion.
            The paper's Dy-mobile uses 1.0 (no expansion).
        split_ratio: ShuffleNetV2 only: the fraction of channels that goes through the right
            (convolution) branch; torchvision 0.5, the paper's Dy-shuffle 0.25 (3:1).
        depthwise_group_width: channels per group of the depthwise convolutions of the blocks
            (1: true depthwise). The paper uses 6 in Dy-mobile and 2 in Dy-shuffle.
    """

    stages: list[int] | str = field(default_factory=list)
    blocks: list[int] | None = None
    roles: list[str] = field(default_factory=lambda: list(ROLES))
    stem: bool = False
    classifier: bool = False
    num_bases: int | list[int] = 4
    mode: str = "dynet"
    temperature: float = 30.0
    static_kernels: bool = False
    reduction: int | list[int | None] | None = 4
    predictor_scope: str = "block"
    width_mult: float = 1.0
    stage_widths: list[float] | None = None
    dynamic_width: float = 1.0
    channel_multiple: int | None = None
    expansion: float | None = None
    split_ratio: float = 0.5
    depthwise_group_width: int = 1

    def __post_init__(self) -> None:
        # Tuples from YAML/Python become lists so that to_dict() round-trips exactly.
        for name in ("stages", "blocks", "roles", "num_bases", "reduction", "stage_widths"):
            value = getattr(self, name)
            if isinstance(value, tuple):
                setattr(self, name, list(value))
        self.validate()

    # ------------------------------------------------------------------ dict round trip
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (lists copied), the inverse of :meth:`from_dict`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base: DynamicSpec | None = None) -> DynamicSpec:
        """Spec from a dict (YAML, Optuna params); missing fields come from ``base`` or defaults."""
        if isinstance(values, DynamicSpec):
            return values
        if not isinstance(values, Mapping):
            raise ValueError(f"a spec must be a DynamicSpec or a dict, got {type(values).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise _fail(unknown[0], f"no such field; the fields are {', '.join(names)}")
        merged = base.to_dict() if base is not None else {}
        merged.update(values)
        return cls(**merged)

    def replace(self, **changes: Any) -> DynamicSpec:
        """A copy with some fields changed (validated)."""
        return DynamicSpec.from_dict(changes, base=self)

    @property
    def is_static(self) -> bool:
        """True when nothing is placed dynamic (or static_kernels is set)."""
        nothing = self.stages == [] and not self.stem and not self.classifier
        return nothing or self.static_kernels

    # ------------------------------------------------------------------ field checks
    def validate(self) -> DynamicSpec:
        """Check every field on its own; raises ValueError naming the field."""
        if self.stages != "all":
            if not isinstance(self.stages, list) or not all(_is_int(s) and s >= 0 for s in self.stages):
                raise _fail("stages", f"must be 'all' or a list of stage indices >= 0, got {self.stages!r}")
            if len(set(self.stages)) != len(self.stages):
                raise _fail("stages", f"lists a stage twice: {self.stages!r}")
        if self.blocks is not None and (
            not isinstance(self.blocks, list) or not self.blocks or not all(_is_int(b) for b in self.blocks)
        ):
            raise _fail("blocks", f"must be None or a non-empty list of block indices, got {self.blocks!r}")
        if not isinstance(self.roles, list) or not self.roles or not set(self.roles) <= set(ROLES):
            raise _fail("roles", f"must be a non-empty list drawn from {ROLES}, got {self.roles!r}")
        for name in ("stem", "classifier", "static_kernels"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(name, f"must be True or False, got {getattr(self, name)!r}")
        for value in self.num_bases if isinstance(self.num_bases, list) else [self.num_bases]:
            if not _is_int(value) or value < 1:
                raise _fail("num_bases", f"must be an integer >= 1 or a list of them, got {self.num_bases!r}")
        if self.mode not in COEFFICIENT_MODES:
            raise _fail("mode", f"must be one of {COEFFICIENT_MODES}, got {self.mode!r}")
        if not _is_number(self.temperature) or self.temperature <= 0:
            raise _fail("temperature", f"must be a number > 0, got {self.temperature!r}")
        for reduction in self.reduction if isinstance(self.reduction, list) else [self.reduction]:
            check_reduction(reduction, name="DynamicSpec.reduction")
        if self.predictor_scope not in PREDICTOR_SCOPES:
            raise _fail("predictor_scope", f"must be one of {PREDICTOR_SCOPES}, got {self.predictor_scope!r}")
        for name in ("width_mult", "dynamic_width"):
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                raise _fail(name, f"must be a number > 0, got {value!r}")
        if self.stage_widths is not None and (
            not isinstance(self.stage_widths, list)
            or not self.stage_widths
            or not all(_is_number(w) and w > 0 for w in self.stage_widths)
        ):
            raise _fail("stage_widths", f"must be None or a list of numbers > 0, got {self.stage_widths!r}")
        if self.channel_multiple is not None and (not _is_int(self.channel_multiple) or self.channel_multiple < 1):
            raise _fail("channel_multiple", f"must be None or an integer >= 1, got {self.channel_multiple!r}")
        if self.expansion is not None and (not _is_number(self.expansion) or self.expansion <= 0):
            raise _fail("expansion", f"must be None or a number > 0, got {self.expansion!r}")
        if not _is_number(self.split_ratio) or not 0 < self.split_ratio < 1:
            raise _fail("split_ratio", f"must be a number strictly between 0 and 1, got {self.split_ratio!r}")
        if not _is_int(self.depthwise_group_width) or self.depthwise_group_width < 1:
            raise _fail("depthwise_group_width", f"must be an integer >= 1, got {self.depthwise_group_width!r}")
        return self


# ---------------------------------------------------------------------- architecture checks
@dataclass(frozen=True)
class StagePlan:
    """One stage of one architecture under one spec, every per-stage value resolved."""

    index: int
    depth: int
    dynamic_blocks: frozenset[int]
    num_bases: int
    reduction: int | None
    width: float  # total channel multiplier of the stage: global x stage x dynamic

    @property
    def dynamic(self) -> bool:
        return bool(self.dynamic_blocks)


def _per_stage(spec: DynamicSpec, name: str, arch: str, num_stages: int) -> list[Any]:
    value = getattr(spec, name)
    if not isinstance(value, list):
        return [value] * num_stages
    if len(value) != num_stages:
        raise _fail(name, f"has {len(value)} values, but {arch} has {num_stages} stages")
    return list(value)


def plan_stages(spec: DynamicSpec, arch: str, depths: Sequence[int], fields: Sequence[str] = ()) -> list[StagePlan]:
    """Resolve ``spec`` for an architecture whose stages have ``depths`` blocks.

    ``fields`` names the family-specific fields the architecture understands (``expansion``,
    ``split_ratio``, ``depthwise_group_width``); setting another one away from its default is an
    error, so a sweep never changes a field that silently does nothing.
    """
    spec.validate()
    defaults = DynamicSpec()
    for name in ("expansion", "split_ratio", "depthwise_group_width"):
        if name not in fields and getattr(spec, name) != getattr(defaults, name):
            raise _fail(name, f"does not apply to {arch}")
    num_stages = len(depths)
    if spec.stages == "all":
        dynamic = set(range(num_stages))
    else:
        assert isinstance(spec.stages, list)  # validate(): "all" or a list of stage indices
        missing = [s for s in spec.stages if s >= num_stages]
        if missing:
            raise _fail("stages", f"stage {missing[0]} does not exist; {arch} has stages 0 to {num_stages - 1}")
        dynamic = set(spec.stages)
    num_bases = _per_stage(spec, "num_bases", arch, num_stages)
    reduction = _per_stage(spec, "reduction", arch, num_stages)
    stage_widths = _per_stage(spec, "stage_widths", arch, num_stages) if spec.stage_widths else [1.0] * num_stages
    plans = []
    for index, depth in enumerate(depths):
        blocks: set[int] = set()
        if index in dynamic:
            if spec.blocks is None:
                blocks = set(range(depth))
            else:
                for b in spec.blocks:
                    if not -depth <= b < depth:
                        raise _fail("blocks", f"block {b} does not exist in stage {index} of {arch} ({depth} blocks)")
                    blocks.add(b % depth)
        width = spec.width_mult * stage_widths[index] * (spec.dynamic_width if index in dynamic else 1.0)
        plans.append(StagePlan(index, depth, frozenset(blocks), num_bases[index], reduction[index], width))
    return plans


def make_divisible(value: float, divisor: int, field_name: str, where: str) -> int:
    """torchvision's ``_make_divisible``: nearest multiple of ``divisor``, never 10% below ``value``.

    A width that would round to zero channels is an error naming the spec field responsible.
    """
    if value < 0.5:
        raise _fail(field_name, f"leaves {value:.3g} channels in {where}, which rounds to zero")
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded
