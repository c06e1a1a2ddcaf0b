"""The model builder every family shares: the stage walk and the layers a spec asks for.

A family describes its stages as data (:class:`StageLayout`: blocks, channels, stride) and hands
them to a :class:`ModelBuilder` with the spec. The builder resolves the spec for the
architecture, walks the stages once for every family (timm's ``EfficientNetBuilder``): the
stride and dilation of each block (``small_input`` and ``output_stride``), the channels of each
stage under the spec's multipliers, each block's input width. For every block it calls the
family's ``make_block`` with a :class:`BlockBuilder` that knows where the block sits and makes
its convolutions (a static ``nn.Conv2d`` or a ``DynamicConv2d`` by role and placement) and, for
``predictor_scope="block"``, its :class:`CoefficientPredictor` (one CPM per block, as in the
paper). Each dynamic layer served by that predictor gets its ``coefficient_slot`` when it is
made: the index of its tensor in the predictor's output.

Every convolution a family builds is followed directly by its BatchNorm, so BatchNorm can be folded
into the bases of a dynamic convolution for inference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from torch import nn

from dynsweep.models._layers import ConvNormAct
from dynsweep.models.spec import DynamicSpec, StagePlan, make_divisible, plan_stages
from dynsweep.nn import CoefficientPredictor, DynamicConv2d, DynamicLinear, check_reduction

Block = TypeVar("Block", bound=nn.Module)

OUTPUT_STRIDES = (8, 16, 32)
SMALL_INPUT_SKIPS = 2
"""Downsamplings ``small_input=True`` removes: the stem's stride and the next one (the stem's
pooling or the first strided block), so the output stride is 8 instead of 32."""


@dataclass(frozen=True)
class StageLayout:
    """One stage of an architecture's table, as the builder walks it."""

    depth: int  # number of blocks
    channels: float  # the stage's width before the spec's multipliers (ResNet: the bottleneck width)
    stride: int  # stride of the stage's first block; the others have stride 1 (timm's rule)


def conv_role(kernel_size: int, groups: int) -> str:
    """The spec role of a convolution: ``pointwise``, ``depthwise`` (any grouped) or ``full``."""
    if groups > 1:
        return "depthwise"
    return "pointwise" if kernel_size == 1 else "full"


class ModelBuilder:
    """Builds one model of a family from a spec: its stage walk, channels and non-block layers.

    ``fields`` names the family-specific spec fields the architecture understands (see
    :func:`plan_stages`). ``small_input=True`` removes the first two downsamplings (the stem's
    stride, then its pooling or the first strided block), for 28 to 64 pixel inputs.
    ``output_stride`` 8 or 16 replaces the strides that would go below it by dilation
    (torchvision's ``replace_stride_with_dilation``: the first block of a dilated stage keeps the
    previous dilation), for the backbones of dilated FCNs (:mod:`dynsweep.models.segmentation`).
    Build the stem (:meth:`stem_conv`, :meth:`stem_pool`) first, then :meth:`build_stages`: the
    walk follows the order of the calls.
    """

    def __init__(
        self,
        spec: DynamicSpec | None,
        arch: str,
        stages: Sequence[StageLayout],
        *,
        default_multiple: int,
        fields: Sequence[str] = (),
        small_input: bool = False,
        output_stride: int = 32,
    ) -> None:
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be 8, 16 or 32 for {arch}, got {output_stride!r}")
        self.spec = spec = spec if spec is not None else DynamicSpec()
        self.arch = arch
        self.stages = list(stages)
        self.plans = plan_stages(spec, arch, [stage.depth for stage in self.stages], fields)
        self.default_multiple = default_multiple
        self.multiple = spec.channel_multiple or default_multiple
        self.output_stride = output_stride
        self.skips_left = SMALL_INPUT_SKIPS if small_input else 0
        self.current_stride = 1
        self.dilation = 1

    @classmethod
    def inverted_residual(
        cls, spec: DynamicSpec | None, arch: str, stages: Sequence[StageLayout], small_input: bool, output_stride: int
    ) -> ModelBuilder:
        """The MobileNets' builder: channels in multiples of 8, blocks with an expansion and a
        depthwise convolution."""
        return cls(
            spec,
            arch,
            stages,
            default_multiple=8,
            fields=("expansion", "depthwise_group_width"),
            small_input=small_input,
            output_stride=output_stride,
        )

    # -- the stage walk ---------------------------------------------------------------------
    def _step(self, stride: int) -> tuple[int, int]:
        """``(stride, dilation)`` of the next layer in the walk that asks for ``stride``."""
        dilation = self.dilation
        if stride == 1:
            return 1, dilation
        if self.skips_left:
            self.skips_left -= 1
            return 1, dilation
        if self.current_stride * stride > self.output_stride:
            self.dilation *= stride  # later blocks dilate; this one keeps the previous dilation
            return 1, dilation
        self.current_stride *= stride
        return stride, dilation

    def build_stages(self, in_channels: int, make_block: Callable[[BlockBuilder], Block]) -> list[list[Block]]:
        """The blocks of every stage: ``make_block(b)`` for each block, in order.

        Each block module must have ``out_channels``: the next block's ``b.in_channels``.
        """
        stages: list[list[Block]] = []
        for stage, layout in enumerate(self.stages):
            channels = self.stage_channels(stage, layout.channels)
            blocks: list[Block] = []
            for index in range(layout.depth):
                stride, dilation = self._step(layout.stride if index == 0 else 1)
                block = make_block(BlockBuilder(self, stage, index, in_channels, channels, stride, dilation))
                in_channels = cast(int, block.out_channels)
                blocks.append(block)
            stages.append(blocks)
        return stages

    # -- channels ---------------------------------------------------------------------------
    def stage_channels(self, stage: int, channels: float) -> int:
        """Channels of a stage after the spec's multipliers and rounding."""
        plan = self.plans[stage]
        return make_divisible(
            channels * plan.width, self.multiple, self._width_field(plan), f"stage {stage} of {self.arch}"
        )

    def fixed_channels(self, channels: float, mult: float, where: str) -> int:
        """Channels outside the stages (stem, head): ``channels * mult`` rounded to the family's multiple."""
        return make_divisible(channels * mult, self.default_multiple, "width_mult", f"{where} of {self.arch}")

    def _width_field(self, plan: StagePlan) -> str:
        spec = self.spec
        names = [n for n, v in (("width_mult", spec.width_mult), ("dynamic_width", spec.dynamic_width)) if v != 1.0]
        if spec.stage_widths is not None:
            names.insert(1, "stage_widths")
        if not plan.dynamic and "dynamic_width" in names:
            names.remove("dynamic_width")
        return "/".join(names) or "width_mult"

    # -- layers outside the blocks ----------------------------------------------------------
    def own_predictor(self, in_channels: int, num_bases: int, reduction: int | None, where: str) -> dict:
        """Keyword arguments of a DynamicConv2d with a predictor of its own."""
        self.check_reduction(in_channels, reduction, where)
        spec = self.spec
        return dict(num_bases=num_bases, mode=spec.mode, reduction=reduction, temperature=spec.temperature)

    def check_reduction(self, in_channels: int, reduction: int | None, where: str) -> None:
        """:func:`~dynsweep.nn.check_reduction` for a predictor of this model, naming the spec field."""
        check_reduction(reduction, in_channels, name="DynamicSpec.reduction", where=f" in {where} of {self.arch}")

    def stem_conv(self, in_channels: int, channels: float, kernel_size: int) -> nn.Conv2d | DynamicConv2d:
        """The first convolution: ``channels x width_mult`` wide, stride 2 unless ``small_input``
        removes it; dynamic (own single-linear predictor) when ``spec.stem``."""
        out_channels = self.fixed_channels(channels, self.spec.width_mult, "the stem")
        stride, padding = self._step(2)[0], (kernel_size - 1) // 2
        if not self.spec.stem or self.spec.static_kernels:
            return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        kwargs = self.own_predictor(in_channels, self.plans[0].num_bases, None, "the stem")
        return DynamicConv2d(in_channels, out_channels, kernel_size, stride, padding, **kwargs)

    def stem_pool(self) -> nn.Module:
        """The stem's 3x3 stride-2 max pooling (ResNet, ShuffleNetV2), or none where ``small_input``
        removes it."""
        if self._step(2)[0] == 1:
            return nn.Identity()
        return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def head_conv(self, in_channels: int, out_channels: int) -> nn.Conv2d | DynamicConv2d:
        """The 1x1 convolution after the last stage; dynamic when ``spec.classifier``."""
        if not self.spec.classifier or self.spec.static_kernels:
            return nn.Conv2d(in_channels, out_channels, 1, bias=False)
        last = self.plans[-1]
        kwargs = self.own_predictor(in_channels, last.num_bases, last.reduction, "the head")
        return DynamicConv2d(in_channels, out_channels, 1, **kwargs)

    def linear(self, in_features: int, out_features: int) -> nn.Linear | DynamicLinear:
        """A classifier Linear; dynamic when ``spec.classifier``."""
        if not self.spec.classifier or self.spec.static_kernels:
            return nn.Linear(in_features, out_features)
        last = self.plans[-1]
        kwargs = self.own_predictor(in_features, last.num_bases, last.reduction, "the classifier")
        return DynamicLinear(in_features, out_features, **kwargs)


class BlockBuilder:
    """Where one block sits (from the stage walk) and the maker of its layers.

    ``in_channels``: the block's input width; ``channels``: its stage's width under the spec;
    ``stride`` and ``dilation``: of its strided convolution. The block's convolutions come from
    :meth:`conv` / :meth:`conv_norm_act`, then its predictor from :meth:`predictor`.
    """

    def __init__(
        self,
        model: ModelBuilder,
        stage: int,
        index: int,
        in_channels: int,
        channels: int,
        stride: int,
        dilation: int,
    ) -> None:
        self.model = model
        self.plan = model.plans[stage]
        self.stage, self.index = stage, index
        self.in_channels, self.channels = in_channels, channels
        self.stride, self.dilation = stride, dilation
        self.dynamic = index in self.plan.dynamic_blocks
        self.where = f"stage {stage} block {index}"
        self.shared_outputs: list[tuple[int, int]] = []

    # -- channels ---------------------------------------------------------------------------
    def depthwise_groups(self, channels: int) -> int:
        """Groups of the block's depthwise convolution on ``channels`` (``spec.depthwise_group_width``)."""
        width = self.model.spec.depthwise_group_width
        if channels % width:
            raise ValueError(
                f"DynamicSpec.depthwise_group_width: {width} does not divide the {channels} channels of the "
                f"depthwise convolution in {self.where} of {self.model.arch}"
            )
        return channels // width

    def expansion(self, table_hidden: int) -> tuple[int, bool]:
        """Hidden width of an inverted residual and whether it has its 1x1 expansion.

        Without ``spec.expansion``: the table's width, expanded where it differs from the input.
        With it: ``expansion x`` the block's output channels, always expanded (the paper's
        three-convolution Dy-mobile block).
        """
        spec = self.model.spec
        if spec.expansion is None:
            return table_hidden, table_hidden != self.in_channels
        hidden = make_divisible(spec.expansion * self.channels, self.model.multiple, "expansion", self.where)
        return hidden, True

    # -- layers -----------------------------------------------------------------------------
    def conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        *,
        candidate: bool = True,
    ) -> nn.Conv2d | DynamicConv2d:
        """A convolution with 'same'-style padding; dynamic if the placement says so.

        ``candidate=False`` keeps a convolution static whatever the placement (e.g. the left
        branch of a ShuffleNetV2 downsampling block).
        """
        spec = self.model.spec
        padding = (kernel_size - 1) // 2 * dilation
        role = conv_role(kernel_size, groups)
        if not (candidate and self.dynamic and role in spec.roles) or spec.static_kernels:
            return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=False)
        args = (in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        plan = self.plan
        if spec.predictor_scope == "block":
            slot = len(self.shared_outputs)  # this layer's place in the block predictor's output
            self.shared_outputs.append((out_channels, plan.num_bases))
            return DynamicConv2d(
                *args, num_bases=plan.num_bases, mode=spec.mode, shared_predictor=True, coefficient_slot=slot
            )
        kwargs = self.model.own_predictor(in_channels, plan.num_bases, plan.reduction, self.where)
        return DynamicConv2d(*args, **kwargs)

    def conv_norm_act(
        self,
        *conv_args: int,
        activation: Callable[[], nn.Module] | None = None,
        norm: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> ConvNormAct:
        """:meth:`conv` (same positional arguments), its ``norm`` and, if given, its ``activation``."""
        conv = self.conv(*conv_args)
        return ConvNormAct(conv, norm(conv.out_channels), activation() if activation is not None else None)

    def predictor(self, in_channels: int) -> CoefficientPredictor | None:
        """The block's predictor (reads a tensor with ``in_channels``), or None if not needed."""
        if not self.shared_outputs:
            return None
        spec = self.model.spec
        self.model.check_reduction(in_channels, self.plan.reduction, self.where)
        return CoefficientPredictor(in_channels, self.shared_outputs, spec.mode, self.plan.reduction, spec.temperature)
