"""Building blocks shared by the model families: a conv factory driven by the spec, and the wiring
of block-level coefficient predictors.

:class:`LayerFactory` turns a :class:`DynamicSpec` into layers. Each block asks it for a
:class:`BlockBuilder`; the builder returns a static ``nn.Conv2d`` or a ``DynamicConv2d`` for each
convolution by its role and the block's placement, and after the block's convolutions are made,
:meth:`BlockBuilder.predictor` returns the block's :class:`CoefficientPredictor` (one CPM per
block, as in the paper) or ``None``. Each dynamic layer served by the block's predictor gets its
``coefficient_slot`` when it is built: the index of its tensor in the predictor's output. In
``forward`` a block asks :func:`block_coefficients` for the coefficients and runs its modules
through :func:`run`, which hands each such layer ``coefficients[layer.coefficient_slot]``.

Every convolution a family builds is followed directly by its BatchNorm, so BatchNorm can be folded
into the bases of a dynamic convolution for inference.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import Tensor, nn

from dynsweep.models.spec import DynamicSpec, StagePlan, make_divisible
from dynsweep.nn import CoefficientPredictor, DynamicConv2d, DynamicLinear, check_reduction

Coefficients = list[Tensor] | None
"""A block's coefficients: its predictor's output, one tensor per slot; None without a predictor."""


def conv_role(kernel_size: int, groups: int) -> str:
    """The spec role of a convolution: ``pointwise``, ``depthwise`` (any grouped) or ``full``."""
    if groups > 1:
        return "depthwise"
    return "pointwise" if kernel_size == 1 else "full"


class ConvNormAct(nn.Sequential):
    """Conv, BatchNorm, optional activation; indexed ``0, 1, 2`` like torchvision's
    ``Conv2dNormActivation`` so state_dict keys match."""

    def __init__(self, conv: nn.Module, norm: nn.Module, activation: nn.Module | None = None) -> None:
        super().__init__(conv, norm, *([activation] if activation is not None else []))
        self.out_channels = norm.num_features


def is_shared(module: nn.Module) -> bool:
    """A dynamic layer that takes its coefficients from a block-level predictor."""
    return isinstance(module, DynamicConv2d) and module.predictor is None


def block_coefficients(predictor: CoefficientPredictor | None, x: Tensor) -> Coefficients:
    """The block's coefficients, one tensor per shared dynamic layer, indexed by its slot."""
    return None if predictor is None else predictor(x)


def run(module: nn.Module, x: Tensor, coefficients: Coefficients) -> Tensor:
    """Apply ``module``, handing each shared dynamic layer (also inside ``nn.Sequential``s) the
    coefficients of its slot. Indexing, not iterating, keeps blocks traceable by ``torch.fx``
    (``dynsweep.nn.fold_batchnorm``) and ``torch.export``."""
    if is_shared(module):
        if coefficients is None:
            raise RuntimeError("a shared-predictor layer ran without block coefficients")
        return module(x, coefficients[module.coefficient_slot])
    if type(module) in (nn.Sequential, ConvNormAct):
        for child in module:
            x = run(child, x, coefficients)
        return x
    return module(x)


class LayerFactory:
    """Makes the layers of one model from a spec and its resolved stages."""

    def __init__(self, spec: DynamicSpec, plans: list[StagePlan], arch: str, default_multiple: int) -> None:
        self.spec = spec
        self.plans = plans
        self.arch = arch
        self.default_multiple = default_multiple
        self.multiple = spec.channel_multiple or default_multiple

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
        names = [
            n for n, v in (("width_mult", spec.width_mult), ("dynamic_width", spec.dynamic_width)) if v != 1.0
        ]
        if spec.stage_widths is not None:
            names.insert(1, "stage_widths")
        if not plan.dynamic and "dynamic_width" in names:
            names.remove("dynamic_width")
        return "/".join(names) or "width_mult"

    def depthwise_groups(self, channels: int, where: str) -> int:
        width = self.spec.depthwise_group_width
        if channels % width:
            raise ValueError(
                f"DynamicSpec.depthwise_group_width: {width} does not divide the {channels} channels of the "
                f"depthwise convolution in {where} of {self.arch}"
            )
        return channels // width

    # -- layers -----------------------------------------------------------------------------
    def block(self, stage: int, index: int) -> BlockBuilder:
        plan = self.plans[stage]
        return BlockBuilder(
            self, plan, dynamic=index in plan.dynamic_blocks, where=f"stage {stage} block {index}"
        )

    def check_reduction(self, in_channels: int, reduction: int | None, where: str) -> None:
        check_reduction(reduction, in_channels, name="DynamicSpec.reduction", where=f" in {where} of {self.arch}")

    def own_predictor(self, in_channels: int, num_bases: int, reduction: int | None, where: str) -> dict:
        """Keyword arguments of a DynamicConv2d with a predictor of its own."""
        self.check_reduction(in_channels, reduction, where)
        spec = self.spec
        return dict(num_bases=num_bases, mode=spec.mode, reduction=reduction, temperature=spec.temperature)

    def stem_conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Module:
        """The first convolution; dynamic (own single-linear predictor) when ``spec.stem``."""
        padding = (kernel_size - 1) // 2
        if not self.spec.stem or self.spec.static_kernels:
            return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        kwargs = self.own_predictor(in_channels, self.plans[0].num_bases, None, "the stem")
        return DynamicConv2d(in_channels, out_channels, kernel_size, stride, padding, **kwargs)

    def head_conv(self, in_channels: int, out_channels: int) -> nn.Module:
        """The 1x1 convolution after the last stage; dynamic when ``spec.classifier``."""
        if not self.spec.classifier or self.spec.static_kernels:
            return nn.Conv2d(in_channels, out_channels, 1, bias=False)
        last = self.plans[-1]
        kwargs = self.own_predictor(in_channels, last.num_bases, last.reduction, "the head")
        return DynamicConv2d(in_channels, out_channels, 1, **kwargs)

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        """A classifier Linear; dynamic when ``spec.classifier``."""
        if not self.spec.classifier or self.spec.static_kernels:
            return nn.Linear(in_features, out_features)
        last = self.plans[-1]
        kwargs = self.own_predictor(in_features, last.num_bases, last.reduction, "the classifier")
        return DynamicLinear(in_features, out_features, **kwargs)


class BlockBuilder:
    """Builds the convolutions of one block and, for ``predictor_scope="block"``, its predictor."""

    def __init__(self, factory: LayerFactory, plan: StagePlan, dynamic: bool, where: str) -> None:
        self.factory = factory
        self.plan = plan
        self.dynamic = dynamic
        self.where = where
        self.shared_outputs: list[tuple[int, int]] = []

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
    ) -> nn.Module:
        """A convolution with 'same'-style padding; dynamic if the placement says so.

        ``candidate=False`` keeps a convolution static whatever the placement (e.g. the left
        branch of a ShuffleNetV2 downsampling block).
        """
        spec = self.factory.spec
        padding = (kernel_size - 1) // 2 * dilation
        role = conv_role(kernel_size, groups)
        if not (candidate and self.dynamic and role in spec.roles) or spec.static_kernels:
            return nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=False
            )
        args = (in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        if spec.predictor_scope == "block":
            slot = len(self.shared_outputs)  # this layer's place in the block predictor's output
            self.shared_outputs.append((out_channels, self.plan.num_bases))
            return DynamicConv2d(
                *args, num_bases=self.plan.num_bases, mode=spec.mode, shared_predictor=True, coefficient_slot=slot
            )
        plan = self.plan
        return DynamicConv2d(
            *args, **self.factory.own_predictor(in_channels, plan.num_bases, plan.reduction, self.where)
        )

    def conv_norm_act(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        activation: Callable[[], nn.Module] | None = None,
        norm: Callable[[int], nn.Module] = nn.BatchNorm2d,
        *,
        candidate: bool = True,
    ) -> ConvNormAct:
        conv = self.conv(
            in_channels, out_channels, kernel_size, stride, dilation, groups, candidate=candidate
        )
        return ConvNormAct(conv, norm(out_channels), activation() if activation is not None else None)

    def predictor(self, in_channels: int) -> CoefficientPredictor | None:
        """The block's predictor (reads a tensor with ``in_channels``), or None if not needed."""
        if not self.shared_outputs:
            return None
        spec = self.factory.spec
        self.factory.check_reduction(in_channels, self.plan.reduction, self.where)
        return CoefficientPredictor(
            in_channels, self.shared_outputs, spec.mode, self.plan.reduction, spec.temperature
        )


def init_static(model: nn.Module, linear_std: float | None = 0.01) -> None:
    """torchvision's initialisation, applied to static kernels and to dynamic bases alike.

    Predictors keep their own. Convs: Kaiming normal, fan_out (for dynamic layers: of the fused
    kernel at the average coefficient, see ``DynamicConv2d.init_bases_``); BatchNorm: ones and
    zeros; Linear: normal(0, ``linear_std``) and zero bias, or PyTorch's default when
    ``linear_std`` is None (ResNet).
    """
    predictor_layers = {
        id(layer) for m in model.modules() if isinstance(m, CoefficientPredictor) for layer in m.modules()
    }
    for m in model.modules():
        if id(m) in predictor_layers:
            continue
        if type(m) is nn.Conv2d:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, DynamicConv2d):
            # The same scheme for the fused kernel, so Dy and Fix twins start alike.
            if isinstance(m, DynamicLinear):
                if linear_std is None:
                    continue
                m.init_bases_(functools.partial(nn.init.normal_, mean=0.0, std=linear_std))
            else:
                m.init_bases_(functools.partial(nn.init.kaiming_normal_, mode="fan_out", nonlinearity="relu"))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif type(m) is nn.Linear and linear_std is not None:
            nn.init.normal_(m.weight, 0, linear_std)
            nn.init.zeros_(m.bias)


def dilate(stride: int, dilation: int, current_stride: int, output_stride: int) -> tuple[int, int, int]:
    """Replace a stride by dilation once the network reaches ``output_stride``.

    Returns ``(stride, dilation for later blocks, new current stride)`` (torchvision's
    ``replace_stride_with_dilation``: the first block of a dilated stage keeps the old dilation).
    """
    if stride > 1 and current_stride * stride > output_stride:
        return 1, dilation * stride, current_stride
    return stride, dilation, current_stride * stride


def check_output_stride(output_stride: int, arch: str) -> None:
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32 for {arch}, got {output_stride!r}")
