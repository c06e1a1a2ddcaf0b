"""Dilated FCN for semantic segmentation (Long et al., "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015; dilated backbone as in DeepLab), the DyNet paper's Cityscapes setting.

Backbone + head, as torchvision's ``fcn_resnet50``: the backbone is any registered model built
with ``features_only=True`` and ``output_stride=8`` (its last strides replaced by dilation), the
head is torchvision's ``FCNHead`` (3x3 conv, BatchNorm, ReLU, dropout, 1x1 classifier), and the
logits are upsampled bilinearly to the input size. Module names follow torchvision's FCN
(``backbone.*``, ``classifier.*``).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dynsweep.models.registry import SpecLike, build_model, get_model_entry


class FCNHead(nn.Sequential):
    """torchvision's FCNHead with an explicit inner width (torchvision: ``in_channels // 4``)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int | None = None) -> None:
        channels = channels or in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(channels, num_classes, 1),
        )


class DilatedFCN(nn.Module):
    """``backbone`` (a feature map at output stride 8) -> ``classifier`` head -> bilinear upsampling.

    ``forward`` returns the logits ``[B, num_classes, H, W]`` as a tensor (torchvision's FCN
    returns ``{"out": logits}``).
    """

    def __init__(self, backbone: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        logits = self.classifier(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_segmentation_model(
    name: str,
    spec: SpecLike = None,
    num_classes: int = 19,
    in_channels: int = 3,
    output_stride: int = 8,
    head_channels: int | None = None,
) -> DilatedFCN:
    """A dilated FCN on the registered backbone ``name`` (e.g. ``resnet50``, ``dy_resnet50``).

    ``spec`` means what it means for :func:`build_model`. ``num_classes`` defaults to Cityscapes'
    19. The head's inner width defaults to the one torchvision's FCN head has on the *baseline*
    architecture (its final channels // 4: 512 for ResNet50, 128 for ResNet18), whatever the
    spec: a Dy-network changes the backbone, not the head, so the two FCNs differ only in their
    backbones (the head's input width follows the backbone).
    """
    backbone = build_model(name, spec, in_channels=in_channels, output_stride=output_stride, features_only=True)
    if head_channels is None:
        entry = get_model_entry(name)
        with torch.device("meta"):  # only its width is needed: no memory, no initialisation cost
            baseline = build_model(entry.baseline or entry.name, features_only=True)
        head_channels = cast(int, baseline.out_channels) // 4  # every registered model has out_channels
    return DilatedFCN(backbone, FCNHead(cast(int, backbone.out_channels), num_classes, head_channels))
