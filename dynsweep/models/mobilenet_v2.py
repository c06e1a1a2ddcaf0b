"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR
2018), built from a :class:`DynamicSpec`.

With the default spec this is torchvision's ``mobilenet_v2`` with the same module names. Each row
``(t, c, n, s)`` of the paper's table is one spec stage (stages 0 to 6). ``spec.expansion``
replaces the table's expansion: the paper's Dy-mobile block has no expansion and three
convolutions of ``C_out`` channels (``expansion=1.0``).
"""

from __future__ import annotations

from torch import Tensor, nn

from dynsweep.models._builder import BlockBuilder, ModelBuilder, StageLayout
from dynsweep.models._layers import Backbone, ConvNormAct, InvertedResidualBase, init_static
from dynsweep.models.registry import register_model
from dynsweep.models.spec import DynamicSpec

# t (expansion), c (output channels), n (blocks), s (stride of the first block): one row a stage.
MOBILENET_V2_TABLE = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


def _relu6() -> nn.Module:
    """In place, as torchvision's: saves an allocation per activation at inference."""
    return nn.ReLU6(inplace=True)


class InvertedResidual(InvertedResidualBase):
    """[1x1 expand] -> 3x3 depthwise -> 1x1 linear projection, residual when shapes allow.

    Modules are named as torchvision's (``conv.0.0`` ... ``conv.2``, ``conv.3``).
    """

    def __init__(self, b: BlockBuilder, expand_ratio: float) -> None:
        inp, oup = b.in_channels, b.channels
        hidden, expand = b.expansion(round(inp * expand_ratio))
        layers: list[nn.Module] = []
        if expand:
            layers.append(b.conv_norm_act(inp, hidden, 1, activation=_relu6))
        layers += [
            b.conv_norm_act(hidden, hidden, 3, b.stride, b.dilation, b.depthwise_groups(hidden), activation=_relu6),
            b.conv(hidden, oup, 1),
            nn.BatchNorm2d(oup),
        ]
        super().__init__(b, "conv", layers)


class MobileNetV2(Backbone):
    """MobileNetV2 from a table and a spec.

    ``width_mult`` follows torchvision (stem and stages scaled, the last 1x1 convolution only
    widened). ``small_input=True`` sets the stride of the stem and of the first strided stage to
    1 (output stride 8, as CIFAR MobileNetV2s do). ``output_stride`` 8 or 16 dilates the
    depthwise convolutions of the last stages; ``features_only=True`` drops the last 1x1
    convolution and the classifier.
    """

    def __init__(
        self,
        table: list[tuple[int, int, int, int]] = MOBILENET_V2_TABLE,
        spec: DynamicSpec | None = None,
        num_classes: int = 1000,
        in_channels: int = 3,
        small_input: bool = False,
        output_stride: int = 32,
        features_only: bool = False,
        dropout: float = 0.2,
        name: str = "mobilenet_v2",
    ) -> None:
        super().__init__()
        layout = [StageLayout(n, c, s) for _, c, n, s in table]
        build = ModelBuilder.inverted_residual(spec, name, layout, small_input, output_stride)
        self.spec, self.arch = build.spec, name

        stem = build.stem_conv(in_channels, STEM_CHANNELS, 3)
        features: list[ConvNormAct | InvertedResidual] = [
            ConvNormAct(stem, nn.BatchNorm2d(stem.out_channels), _relu6())
        ]
        for blocks in build.build_stages(stem.out_channels, lambda b: InvertedResidual(b, table[b.stage][0])):
            features += blocks
        inp = features[-1].out_channels
        self.features_only = features_only
        if not features_only:
            widen = max(1.0, build.spec.width_mult)
            last = build.fixed_channels(LAST_CHANNELS, widen, "the last convolution")
            features.append(ConvNormAct(build.head_conv(inp, last), nn.BatchNorm2d(last), _relu6()))
            inp = last
        self.features = nn.Sequential(*features)
        self.out_channels = inp
        if not features_only:
            self.classifier = nn.Sequential(nn.Dropout(p=dropout), build.linear(inp, num_classes))
        init_static(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.classifier(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


@register_model
def mobilenet_v2(spec: DynamicSpec | None = None, **kwargs) -> MobileNetV2:
    """MobileNetV2 1.0 (torchvision's mobilenet_v2 with the default spec)."""
    return MobileNetV2(MOBILENET_V2_TABLE, spec, name="mobilenet_v2", **kwargs)
