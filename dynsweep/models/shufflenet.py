"""ShuffleNetV2 (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", ECCV 2018), built from a :class:`DynamicSpec`.

With the default spec these are torchvision's ``shufflenet_v2_x{0_5,1_0,1_5,2_0}`` with the same
module names. Stages are ``stage2`` to ``stage4`` (spec stages 0 to 2). The placement candidates
are the right branch's convolutions (pointwise, depthwise, pointwise), as in the paper's
Dy-shuffle; the left branch of the downsampling blocks stays static. ``spec.split_ratio`` is the
share of channels that goes through the right branch (torchvision 1:1, the paper's Dy-shuffle
3:1 left:right) and ``spec.depthwise_group_width`` sets the right branch's depthwise groups.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dynsweep.models._builder import BlockBuilder, ModelBuilder, StageLayout
from dynsweep.models._layers import Backbone, ConvNormAct, block_coefficients, run
from dynsweep.models.registry import register_alias, register_model
from dynsweep.models.spec import DynamicSpec

SHUFFLENET_V2_DEPTHS = (4, 8, 4)
# stem, stage2, stage3, stage4, last 1x1 convolution: one row per width (torchvision's table).
SHUFFLENET_V2_WIDTHS = {
    "0_5": (24, 48, 96, 192, 1024),
    "1_0": (24, 116, 232, 464, 1024),
    "1_5": (24, 176, 352, 704, 1024),
    "2_0": (24, 244, 488, 976, 2048),
}


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave ``groups`` equal slices of the channels (written without shape unpacking, so it traces)."""
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


def split_channels(channels: int, split_ratio: float, where: str) -> int:
    """Channels of the right branch; both branches must keep at least one channel."""
    right = round(channels * split_ratio)
    if not 0 < right < channels:
        raise ValueError(
            f"DynamicSpec.split_ratio: {split_ratio} leaves {right} of {channels} channels "
            f"for the right branch in {where}"
        )
    return right


class InvertedResidual(nn.Module):
    """ShuffleNetV2 unit: split (or, when downsampling, two branches on the whole input),
    right branch 1x1 -> 3x3 depthwise -> 1x1, concatenate, channel shuffle.

    The block's predictor reads the right branch's input.
    """

    def __init__(self, b: BlockBuilder) -> None:
        super().__init__()
        inp, oup, stride, dilation = b.in_channels, b.channels, b.stride, b.dilation
        if b.index == 0 and oup % 2:
            raise ValueError(
                f"DynamicSpec.channel_multiple: stage {b.stage} gets {oup} channels; ShuffleNetV2's "
                "channel shuffle needs an even count (use an even channel_multiple or width)"
            )
        right = split_channels(oup, b.model.spec.split_ratio, b.where)
        self.downsample = downsample = b.index == 0
        self.left, self.right = oup - right, right
        if downsample:
            self.branch1 = nn.Sequential(
                b.conv(inp, inp, 3, stride, dilation, groups=inp, candidate=False),
                nn.BatchNorm2d(inp),
                b.conv(inp, self.left, 1, candidate=False),
                nn.BatchNorm2d(self.left),
                nn.ReLU(inplace=True),
            )
            branch_in = inp
        else:
            if inp != oup:
                raise ValueError(f"a ShuffleNetV2 unit without downsampling needs inp == oup, got {inp} and {oup}")
            self.branch1 = nn.Sequential()
            branch_in = right
        self.branch2 = nn.Sequential(
            b.conv(branch_in, right, 1),
            nn.BatchNorm2d(right),
            nn.ReLU(inplace=True),
            b.conv(right, right, 3, stride, dilation, groups=b.depthwise_groups(right)),
            nn.BatchNorm2d(right),
            b.conv(right, right, 1),
            nn.BatchNorm2d(right),
            nn.ReLU(inplace=True),
        )
        self.predictor = b.predictor(branch_in)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample:
            right = run(self.branch2, x, block_coefficients(self.predictor, x))
            out = torch.cat((self.branch1(x), right), dim=1)
        else:
            x1, x2 = x[:, : self.left], x[:, self.left :]
            out = torch.cat((x1, run(self.branch2, x2, block_coefficients(self.predictor, x2))), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(Backbone):
    """ShuffleNetV2 from a width row and a spec.

    ``width_mult`` scales the stem and the stages (the last 1x1 convolution only widens, as in
    MobileNetV2). ``small_input=True`` makes the stem stride 1 and drops the max pooling (output
    stride 8). ``output_stride`` 8 or 16 dilates the last stages; ``features_only=True`` drops
    the last 1x1 convolution and the classifier.
    """

    def __init__(
        self,
        widths: tuple[int, ...],
        spec: DynamicSpec | None = None,
        num_classes: int = 1000,
        in_channels: int = 3,
        small_input: bool = False,
        output_stride: int = 32,
        features_only: bool = False,
        depths: tuple[int, ...] = SHUFFLENET_V2_DEPTHS,
        name: str = "shufflenet_v2",
    ) -> None:
        super().__init__()
        build = ModelBuilder(
            spec,
            name,
            [StageLayout(depth, channels, 2) for depth, channels in zip(depths, widths[1:-1], strict=True)],
            default_multiple=2,
            fields=("split_ratio", "depthwise_group_width"),
            small_input=small_input,
            output_stride=output_stride,
        )
        self.spec, self.arch = build.spec, name

        stem = build.stem_conv(in_channels, widths[0], 3)
        self.conv1 = ConvNormAct(stem, nn.BatchNorm2d(stem.out_channels), nn.ReLU(inplace=True))
        self.maxpool = build.stem_pool()
        stages = build.build_stages(stem.out_channels, InvertedResidual)
        self.stage_names = [f"stage{i + 2}" for i in range(len(stages))]
        for stage_name, units in zip(self.stage_names, stages, strict=True):
            self.add_module(stage_name, nn.Sequential(*units))
        inp = stages[-1][-1].out_channels
        self.features_only = features_only
        if not features_only:
            last = build.fixed_channels(widths[-1], max(1.0, build.spec.width_mult), "the last convolution")
            self.conv5 = ConvNormAct(build.head_conv(inp, last), nn.BatchNorm2d(last), nn.ReLU(inplace=True))
            self.fc = build.linear(last, num_classes)
            inp = last
        self.out_channels = inp  # torchvision keeps PyTorch's default initialisation here

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(self.conv5(x).mean([2, 3]))


def _shufflenet_v2(width: str, spec: DynamicSpec | None, **kwargs) -> ShuffleNetV2:
    name = f"shufflenet_v2_x{width}"
    return ShuffleNetV2(SHUFFLENET_V2_WIDTHS[width], spec, name=name, **kwargs)


@register_model
def shufflenet_v2_x0_5(spec: DynamicSpec | None = None, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x (torchvision's shufflenet_v2_x0_5 with the default spec)."""
    return _shufflenet_v2("0_5", spec, **kwargs)


@register_model
def shufflenet_v2_x1_0(spec: DynamicSpec | None = None, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x (torchvision's shufflenet_v2_x1_0 with the default spec)."""
    return _shufflenet_v2("1_0", spec, **kwargs)


@register_model
def shufflenet_v2_x1_5(spec: DynamicSpec | None = None, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x (torchvision's shufflenet_v2_x1_5 with the default spec)."""
    return _shufflenet_v2("1_5", spec, **kwargs)


@register_model
def shufflenet_v2_x2_0(spec: DynamicSpec | None = None, **kwargs) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x (torchvision's shufflenet_v2_x2_0 with the default spec)."""
    return _shufflenet_v2("2_0", spec, **kwargs)


register_alias("shufflenet_v2", "shufflenet_v2_x1_0")
