"""MobileNetV3-Small/Large (Howard et al., "Searching for MobileNetV3", ICCV 2019), built from a
:class:`DynamicSpec`.

With the default spec these are torchvision's ``mobilenet_v3_small`` / ``mobilenet_v3_large``
with the same module names. The tables are the paper's Tables 1 and 2, grouped into stages of
blocks with one output width (timm's grouping: 6 stages for Large, 5 for Small). The
squeeze-and-excitation modules stay static; they are not placement candidates.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

from torch import Tensor, nn
from torchvision.ops import SqueezeExcitation

from dynsweep.models._builder import BlockBuilder, ModelBuilder, StageLayout
from dynsweep.models._layers import Backbone, ConvNormAct, InvertedResidualBase, init_static
from dynsweep.models.registry import register_model
from dynsweep.models.spec import DynamicSpec, make_divisible


class BlockConfig(NamedTuple):
    """One row of the paper's table (input channels come from the previous row).

    A stage is a run of rows with one ``out``, strided at its first row: the stage walk reads
    ``out`` and ``stride`` from that row.
    """

    kernel: int
    expanded: int
    out: int
    use_se: bool
    activation: str  # "RE" (ReLU) or "HS" (Hardswish)
    stride: int


B = BlockConfig
MOBILENET_V3_LARGE = [
    [B(3, 16, 16, False, "RE", 1)],
    [B(3, 64, 24, False, "RE", 2), B(3, 72, 24, False, "RE", 1)],
    [B(5, 72, 40, True, "RE", 2), B(5, 120, 40, True, "RE", 1), B(5, 120, 40, True, "RE", 1)],
    [
        B(3, 240, 80, False, "HS", 2),
        B(3, 200, 80, False, "HS", 1),
        B(3, 184, 80, False, "HS", 1),
        B(3, 184, 80, False, "HS", 1),
    ],
    [B(3, 480, 112, True, "HS", 1), B(3, 672, 112, True, "HS", 1)],
    [B(5, 672, 160, True, "HS", 2), B(5, 960, 160, True, "HS", 1), B(5, 960, 160, True, "HS", 1)],
]
MOBILENET_V3_SMALL = [
    [B(3, 16, 16, True, "RE", 2)],
    [B(3, 72, 24, False, "RE", 2), B(3, 88, 24, False, "RE", 1)],
    [B(5, 96, 40, True, "HS", 2), B(5, 240, 40, True, "HS", 1), B(5, 240, 40, True, "HS", 1)],
    [B(5, 120, 48, True, "HS", 1), B(5, 144, 48, True, "HS", 1)],
    [B(5, 288, 96, True, "HS", 2), B(5, 576, 96, True, "HS", 1), B(5, 576, 96, True, "HS", 1)],
]
# stem channels, channels of the classifier's hidden layer
MOBILENET_V3_HEADS = {"mobilenet_v3_large": (16, 1280), "mobilenet_v3_small": (16, 1024)}

_norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
_ACTIVATIONS = {"RE": nn.ReLU, "HS": nn.Hardswish}


class InvertedResidual(InvertedResidualBase):
    """[1x1 expand] -> k x k depthwise -> [squeeze-excitation] -> 1x1 projection, + residual.

    Modules are named as torchvision's (``block.0`` ...).
    """

    def __init__(self, b: BlockBuilder, cnf: BlockConfig) -> None:
        inp, oup, act = b.in_channels, b.channels, _ACTIVATIONS[cnf.activation]
        hidden, expand = b.expansion(b.model.stage_channels(b.stage, cnf.expanded))
        layers: list[nn.Module] = []
        if expand:
            layers.append(b.conv_norm_act(inp, hidden, 1, activation=act, norm=_norm))
        groups = b.depthwise_groups(hidden)
        depthwise = (hidden, hidden, cnf.kernel, b.stride, b.dilation, groups)
        layers.append(b.conv_norm_act(*depthwise, activation=act, norm=_norm))
        if cnf.use_se:
            squeeze = make_divisible(hidden // 4, 8, "expansion", "a squeeze-excitation")
            layers.append(SqueezeExcitation(hidden, squeeze, scale_activation=nn.Hardsigmoid))
        layers.append(b.conv_norm_act(hidden, oup, 1, norm=_norm))
        super().__init__(b, "block", layers)


class MobileNetV3(Backbone):
    """MobileNetV3 from a stage table and a spec.

    ``width_mult`` follows torchvision (every width scaled, the classifier's hidden layer too).
    ``small_input=True`` sets the stride of the stem and of the first strided block to 1 (output
    stride 8). ``output_stride`` 8 or 16 dilates the depthwise convolutions of the last stages;
    ``features_only=True`` drops the last 1x1 convolution and the classifier.
    """

    def __init__(
        self,
        table: list[list[BlockConfig]],
        spec: DynamicSpec | None = None,
        num_classes: int = 1000,
        in_channels: int = 3,
        small_input: bool = False,
        output_stride: int = 32,
        features_only: bool = False,
        stem_channels: int = 16,
        last_channels: int = 1280,
        dropout: float = 0.2,
        name: str = "mobilenet_v3",
    ) -> None:
        super().__init__()
        layout = [StageLayout(len(rows), rows[0].out, rows[0].stride) for rows in table]
        build = ModelBuilder.inverted_residual(spec, name, layout, small_input, output_stride)
        self.spec, self.arch = build.spec, name

        stem = build.stem_conv(in_channels, stem_channels, 3)
        layers: list[ConvNormAct | InvertedResidual] = [ConvNormAct(stem, _norm(stem.out_channels), nn.Hardswish())]
        for blocks in build.build_stages(stem.out_channels, lambda b: InvertedResidual(b, table[b.stage][b.index])):
            layers += blocks
        inp = layers[-1].out_channels
        self.features_only = features_only
        if not features_only:
            layers.append(ConvNormAct(build.head_conv(inp, 6 * inp), _norm(6 * inp), nn.Hardswish()))
            inp = 6 * inp
        self.features = nn.Sequential(*layers)
        self.out_channels = inp
        if not features_only:
            hidden_features = build.fixed_channels(last_channels, build.spec.width_mult, "the classifier")
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(
                build.linear(inp, hidden_features),
                nn.Hardswish(inplace=True),
                nn.Dropout(p=dropout, inplace=True),
                build.linear(hidden_features, num_classes),
            )
        init_static(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(x).flatten(1))


def _mobilenet_v3(name: str, table: list[list[BlockConfig]], spec: DynamicSpec | None, **kwargs) -> MobileNetV3:
    stem, last = MOBILENET_V3_HEADS[name]
    return MobileNetV3(table, spec, stem_channels=stem, last_channels=last, name=name, **kwargs)


@register_model
def mobilenet_v3_large(spec: DynamicSpec | None = None, **kwargs) -> MobileNetV3:
    """MobileNetV3-Large 1.0 (torchvision's mobilenet_v3_large with the default spec)."""
    return _mobilenet_v3("mobilenet_v3_large", MOBILENET_V3_LARGE, spec, **kwargs)


@register_model
def mobilenet_v3_small(spec: DynamicSpec | None = None, **kwargs) -> MobileNetV3:
    """MobileNetV3-Small 1.0 (torchvision's mobilenet_v3_small with the default spec)."""
    return _mobilenet_v3("mobilenet_v3_small", MOBILENET_V3_SMALL, spec, **kwargs)
