"""ResNet-18/50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016), built
from a :class:`DynamicSpec`.

With the default spec this is torchvision's ``resnet18`` / ``resnet50`` (ResNet V1.5: the stride
of a bottleneck sits on its 3x3 convolution), with the same module names, so torchvision
state_dicts load unchanged. Stages are ``layer1`` to ``layer4`` (spec stages 0 to 3). Every
convolution of a residual block (the 1x1 projection shortcut included) is a placement candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from dynsweep.models._builder import BlockBuilder, ModelBuilder, StageLayout
from dynsweep.models._layers import Backbone, block_coefficients, init_static, run
from dynsweep.models.registry import register_model
from dynsweep.models.spec import DynamicSpec


@dataclass(frozen=True)
class ResNetConfig:
    """The architecture table: block kind and, per stage, blocks, base width and stride."""

    block: str  # "basic" or "bottleneck"
    depths: tuple[int, ...]
    planes: tuple[int, ...] = (64, 128, 256, 512)
    strides: tuple[int, ...] = (1, 2, 2, 2)
    stem_channels: int = 64

    @property
    def stages(self) -> list[StageLayout]:
        return [StageLayout(*row) for row in zip(self.depths, self.planes, self.strides, strict=True)]


RESNET_CONFIGS = {
    "resnet18": ResNetConfig("basic", (2, 2, 2, 2)),
    "resnet50": ResNetConfig("bottleneck", (3, 4, 6, 3)),
}


def _shortcut(b: BlockBuilder, outplanes: int) -> nn.Sequential | None:
    if b.stride == 1 and b.in_channels == outplanes:
        return None
    return nn.Sequential(b.conv(b.in_channels, outplanes, 1, b.stride), nn.BatchNorm2d(outplanes))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a residual; dilated blocks (for segmentation) are allowed."""

    expansion = 1

    def __init__(self, b: BlockBuilder) -> None:
        super().__init__()
        inplanes, planes = b.in_channels, b.channels
        self.conv1 = b.conv(inplanes, planes, 3, b.stride, b.dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = b.conv(planes, planes, 3, 1, b.dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(b, planes)
        self.predictor = b.predictor(inplanes)
        self.out_channels = planes * self.expansion

    def forward(self, x: Tensor) -> Tensor:
        eta = block_coefficients(self.predictor, x)
        out = self.relu(self.bn1(run(self.conv1, x, eta)))
        out = self.bn2(run(self.conv2, out, eta))
        identity = x if self.downsample is None else run(self.downsample, x, eta)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand by 4, and a residual."""

    expansion = 4

    def __init__(self, b: BlockBuilder) -> None:
        super().__init__()
        inplanes, planes = b.in_channels, b.channels
        self.conv1 = b.conv(inplanes, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = b.conv(planes, planes, 3, b.stride, b.dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.out_channels = planes * self.expansion
        self.conv3 = b.conv(planes, self.out_channels, 1)
        self.bn3 = nn.BatchNorm2d(self.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(b, self.out_channels)
        self.predictor = b.predictor(inplanes)

    def forward(self, x: Tensor) -> Tensor:
        eta = block_coefficients(self.predictor, x)
        out = self.relu(self.bn1(run(self.conv1, x, eta)))
        out = self.relu(self.bn2(run(self.conv2, out, eta)))
        out = self.bn3(run(self.conv3, out, eta))
        identity = x if self.downsample is None else run(self.downsample, x, eta)
        return self.relu(out + identity)


BLOCKS: dict[str, type[BasicBlock | Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(Backbone):
    """A ResNet from a table and a spec.

    ``small_input=True`` makes the stem a 3x3 stride-1 convolution without max pooling (CIFAR
    ResNets), for 28 to 64 pixel inputs: output stride 8 instead of 32. ``output_stride`` 8 or 16
    replaces the last strides by dilation (torchvision's ``replace_stride_with_dilation``), for
    dilated FCNs. ``features_only=True`` drops pooling and classifier: ``forward`` returns the
    last stage's feature map. Width multipliers scale the stem and the stages.
    """

    def __init__(
        self,
        config: ResNetConfig,
        spec: DynamicSpec | None = None,
        num_classes: int = 1000,
        in_channels: int = 3,
        small_input: bool = False,
        output_stride: int = 32,
        features_only: bool = False,
        name: str = "resnet",
    ) -> None:
        super().__init__()
        build = ModelBuilder(
            spec,
            name,
            config.stages,
            default_multiple=1,
            small_input=small_input,
            output_stride=output_stride,
        )
        self.spec, self.arch = build.spec, name

        self.conv1 = build.stem_conv(in_channels, config.stem_channels, 3 if small_input else 7)
        self.bn1 = nn.BatchNorm2d(self.conv1.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = build.stem_pool()
        stages: list[list[BasicBlock | Bottleneck]] = build.build_stages(self.conv1.out_channels, BLOCKS[config.block])
        for stage, blocks in enumerate(stages):
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.num_stages = len(stages)
        self.out_channels = inplanes = stages[-1][-1].out_channels

        self.features_only = features_only
        if not features_only:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = build.linear(inplanes, num_classes)
        init_static(self, linear_std=None)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(self.avgpool(x).flatten(1))


@register_model
def resnet18(spec: DynamicSpec | None = None, **kwargs) -> ResNet:
    """ResNet-18: basic blocks, [2, 2, 2, 2] (torchvision's resnet18 with the default spec)."""
    return ResNet(RESNET_CONFIGS["resnet18"], spec, name="resnet18", **kwargs)


@register_model
def resnet50(spec: DynamicSpec | None = None, **kwargs) -> ResNet:
    """ResNet-50: bottleneck blocks, [3, 4, 6, 3] (torchvision's resnet50 with the default spec)."""
    return ResNet(RESNET_CONFIGS["resnet50"], spec, name="resnet50", **kwargs)
