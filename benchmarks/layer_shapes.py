"""Convolution shapes of ResNet18 and MobileNetV2 stages at 224 x 224, for the operator benchmark."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConvShape:
    name: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    groups: int
    input_size: int

    @property
    def padding(self) -> int:
        return self.kernel_size // 2


def _mobilenet_block(stage: str, cin: int, hidden: int, cout: int, stride: int, size: int) -> list[ConvShape]:
    out_size = size // stride
    return [
        ConvShape(f"mbv2.{stage}.expand", cin, hidden, 1, 1, 1, size),
        ConvShape(f"mbv2.{stage}.dw", hidden, hidden, 3, stride, hidden, size),
        ConvShape(f"mbv2.{stage}.project", hidden, cout, 1, 1, 1, out_size),
    ]


RESNET18 = [
    ConvShape("r18.layer1.conv", 64, 64, 3, 1, 1, 56),
    ConvShape("r18.layer2.conv1", 64, 128, 3, 2, 1, 56),
    ConvShape("r18.layer2.conv", 128, 128, 3, 1, 1, 28),
    ConvShape("r18.layer2.down", 64, 128, 1, 2, 1, 56),
    ConvShape("r18.layer3.conv1", 128, 256, 3, 2, 1, 28),
    ConvShape("r18.layer3.conv", 256, 256, 3, 1, 1, 14),
    ConvShape("r18.layer4.conv1", 256, 512, 3, 2, 1, 14),
    ConvShape("r18.layer4.conv", 512, 512, 3, 1, 1, 7),
]

MOBILENET_V2 = (
    _mobilenet_block("s2", 16, 96, 24, 2, 112)
    + _mobilenet_block("s3", 24, 144, 32, 2, 56)
    + _mobilenet_block("s4", 32, 192, 64, 2, 28)
    + _mobilenet_block("s5", 64, 384, 96, 1, 14)
    + _mobilenet_block("s6", 96, 576, 160, 2, 14)
    + _mobilenet_block("s7", 160, 960, 320, 1, 7)
)

ALL_SHAPES = RESNET18 + MOBILENET_V2
