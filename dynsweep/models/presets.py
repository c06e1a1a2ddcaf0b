"""The DyNet paper's networks (Zhang et al., arXiv 2004.10694) as presets: each is a spec on a
registered architecture, and each ``fix_*`` twin is the same spec with ``static_kernels=True``
(the same channels, plain convolutions, no predictor: the paper's Fix-* ablation).

All use ``g = 6`` bases and one coefficient predictor per block (the paper's CPM), in ``dynet``
mode (one sigmoid coefficient per output channel and base). Cost ratios below are MACs of the
preset over its torchvision baseline at 224 x 224, by ``dynsweep.cost.count`` (inference form:
fused kernels, predictor and kernel fusion included), with the paper's ratio in brackets.
"""

from __future__ import annotations

from dynsweep.models import mobilenet_v2, mobilenet_v3, resnet, shufflenet  # noqa: F401  (the baselines)
from dynsweep.models.registry import register_preset
from dynsweep.models.spec import DynamicSpec


def _dy_shufflenet_v2() -> DynamicSpec:
    return DynamicSpec(
        stages="all",
        num_bases=6,
        reduction=None,
        split_ratio=0.25,
        depthwise_group_width=2,
        channel_multiple=8,
        stage_widths=[1.05, 1.05, 1.05],
    )


def _dy_mobilenet_v2() -> DynamicSpec:
    return DynamicSpec(
        stages="all",
        num_bases=6,
        reduction=None,
        expansion=1.0,
        depthwise_group_width=6,
        channel_multiple=6,
    )


def _dy_resnet(num_bases: int = 6) -> DynamicSpec:
    return DynamicSpec(stages="all", num_bases=num_bases, reduction=4, dynamic_width=0.5)


def _dy_mobilenet_v3() -> DynamicSpec:
    return DynamicSpec(stages="all", num_bases=6, reduction=4)


@register_preset("shufflenet_v2_x1_0")
def dy_shufflenet_v2() -> DynamicSpec:
    """Dy-shuffle (1.0): ShuffleNetV2 1.0x, split 3:1, dynamic right branch; 0.59 of the MACs (0.60).

    - Channel split left:right = 3:1 (``split_ratio=0.25``) in every unit; the downsampling
      units give their two branches the same 3:1 share of the output channels, so every unit
      hands the next one the same layout.
    - The right branch (1x1, 3x3 depthwise, 1x1) is dynamic, with one single-linear CPM per unit
      fed by the right branch's input (``reduction=None``).
    - Depthwise groups of 2 channels (``depthwise_group_width=2``): the right branch has half
      the channels it has at 1:1, so its depthwise convolution keeps its MACs.
    - Stage channels are multiples of 8 so the right branch (a quarter) divides into groups of 2.
    - Stages widened by 5% (``stage_widths=1.05``: 120, 240, 488 channels instead of 116, 232,
      464). The paper's changes alone give 0.565 of the baseline's MACs by our count against the
      paper's 88/146 = 0.60; the widening spends the difference on channels.
    """
    return _dy_shufflenet_v2()


@register_preset("shufflenet_v2_x1_0")
def fix_shufflenet_v2() -> DynamicSpec:
    """Fix-shuffle (1.0): Dy-shuffle's channels and groups with static kernels and no predictor."""
    return _dy_shufflenet_v2().replace(static_kernels=True)


@register_preset("mobilenet_v2")
def dy_mobilenet_v2() -> DynamicSpec:
    """Dy-mobile: MobileNetV2 blocks without expansion, all three convs dynamic; 0.44 of the MACs (0.43).

    - No expansion: each block is 1x1, 3x3 depthwise, 1x1, all with the block's ``C_out``
      channels (``expansion=1.0``; the first block gains its expansion conv too).
    - Depthwise ``groups = C_out / 6`` (``depthwise_group_width=6``), so block channels are
      multiples of 6 (``channel_multiple=6``): 18, 24, 30, 66, 96, 162, 318. The paper rounds
      up; we keep torchvision's one rounding rule (nearest, never 10% down), which takes 32 to
      30 and 320 to 318 instead of 36 and 324.
    - One single-linear CPM per block fed by the block input (``reduction=None``), g = 6.
    - Stem, last 1x1 convolution and classifier stay static and keep their widths.
    """
    return _dy_mobilenet_v2()


@register_preset("mobilenet_v2")
def fix_mobilenet_v2() -> DynamicSpec:
    """Fix-mobile: Dy-mobile's channels and groups with static kernels and no predictor."""
    return _dy_mobilenet_v2().replace(static_kernels=True)


@register_preset("resnet18")
def dy_resnet18() -> DynamicSpec:
    """Dy-ResNet18: every residual-block conv dynamic, channels halved; 0.33 of the MACs (0.32).

    - The output channels of the dynamic layers are halved (``dynamic_width=0.5``); as the
      residual stream has one width per stage, the stages run at 32, 64, 128, 256 channels.
    - The stem (7x7, 64 channels) and the classifier stay static; the first block therefore
      gets a 1x1 projection shortcut (64 -> 32), dynamic like every other block conv.
    - One two-layer CPM per block (``C_in -> C_in / 4 -> coefficients``, ``reduction=4``)
      fed by the block input, g = 6.
    """
    return _dy_resnet()


@register_preset("resnet18")
def fix_resnet18() -> DynamicSpec:
    """Fix-ResNet18: Dy-ResNet18's halved channels with static kernels and no predictor."""
    return _dy_resnet().replace(static_kernels=True)


@register_preset("resnet50")
def dy_resnet50() -> DynamicSpec:
    """Dy-ResNet50: every bottleneck conv dynamic, channels halved; 0.29 of the MACs (0.28).

    - The output channels of the dynamic layers are halved (``dynamic_width=0.5``): bottleneck
      widths 32, 64, 128, 256 and stage outputs 128, 256, 512, 1024.
    - Stem and classifier static; projection shortcuts dynamic (1x1 role).
    - One two-layer CPM per block (``reduction=4``) fed by the block input, g = 6.
    """
    return _dy_resnet()


@register_preset("resnet50")
def fix_resnet50() -> DynamicSpec:
    """Fix-ResNet50: Dy-ResNet50's halved channels with static kernels and no predictor."""
    return _dy_resnet().replace(static_kernels=True)


_MOBILENET_V3_DOC = """Dy-MobileNetV3-{size}: bottleneck convs dynamic, same channels; {ratio} x the MACs.

    The paper reports +{gain} top-1 "at the same cost" without a recipe; ours:

    - Same channels, same blocks: the 1x1 expansion, the depthwise and the 1x1 projection of
      every bottleneck are dynamic, g = 6 as in every DyNet network. The extra cost is the
      kernel fusion and the predictors, which do not grow with the image: {extra} more MACs
      than the baseline at 224 x 224, less at larger inputs, more at small ones ({small} at
      32 x 32). Shrinking channels to pay for it would trade away the accuracy the preset is for.
    - One CPM per block fed by the block input, two-layer with ``reduction=4``: the coefficient
      vector of a block is wide (up to 2 x 960 x 6 + 160 x 6 values), so a single linear layer
      from the block input would cost as much as the fusion; the reduction makes it 4x cheaper.
    - Squeeze-and-excitation modules stay as they are (static channel attention between the
      depthwise and the projection), and so do the stem, the last 1x1 convolution and the
      classifier: at 7 x 7 or 1 x 1 resolution their fusion would cost up to g times their
      convolution.
    """


def _doc(**values: str):
    def decorator(fn):
        fn.__doc__ = _MOBILENET_V3_DOC.format(**values)
        return fn

    return decorator


@register_preset("mobilenet_v3_small")
@_doc(size="Small", ratio="1.05", gain="2.9", extra="5%", small="1.16")
def dy_mobilenet_v3_small() -> DynamicSpec:
    return _dy_mobilenet_v3()


@register_preset("mobilenet_v3_large")
@_doc(size="Large", ratio="1.04", gain="1.9", extra="4%", small="1.14")
def dy_mobilenet_v3_large() -> DynamicSpec:
    return _dy_mobilenet_v3()
