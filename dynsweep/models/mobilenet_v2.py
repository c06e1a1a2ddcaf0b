"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR
2018), built from a :class:`DynamicSpec`.

With the default spec this is torchvision's ``mobilenet_v2`` with the same module names. Each row
``(t, c, n, s)`` of the paper's table is one spec stage (stages 0 to 6). ``spec.expansion``
replaces the table's expansion: the paper's Dy-mobile block has no expansion and three
convolutions of ``C_out`` channels (``expansion=1.0``).
"""

from __future__ import annotations

from torch import Tensor, nn

from dynsweep.models._layers import (
    BlockBuilder,
    ConvNormAct,
    LayerFactory,
    block_coefficients,
    check_output_stride,
    dilate,
    init_static,
    run,
)
from dynsweep.models.registry import register_model
from dynsweep.models.spec import DynamicSpec, make_divisible, plan_stages

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


class InvertedResidual(nn.Module):
    """[1x1 expand] -> 3x3 depthwise -> 1x1 linear projection, residual when shapes allow.

    Modules are named as torchvision's (``conv.0.0`` ... ``conv.2``, ``conv.3``).
    """

    def __init__(
        self,
        b: BlockBuilder,
        inp: int,
        hidden: int,
        oup: int,
        stride: int,
        dilation: int,
        expand: bool,
        dw_groups: int,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expand:
            layers.append(b.conv_norm_act(inp, hidden, 1, activation=_relu6))
        layers += [
            b.conv_norm_act(hidden, hidden, 3, stride, dilation, dw_groups, activation=_relu6),
            b.conv(hidden, oup, 1),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and inp == oup
        self.out_channels = oup
        self.predictor = b.predictor(inp)

    def forward(self, x: Tensor) -> Tensor:
        out = run(self.conv, x, block_coefficients(self.predictor, x))
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
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
        spec = spec or DynamicSpec()
        check_output_stride(output_stride, name)
        self.spec, self.arch = spec, name
        depths = [n for _, _, n, _ in table]
        factory = LayerFactory(
            spec,
            plan_stages(spec, name, depths, ("expansion", "depthwise_group_width")),
            name,
            default_multiple=8,
        )

        inp = factory.fixed_channels(STEM_CHANNELS, spec.width_mult, "the stem")
        features: list[nn.Module] = [
            ConvNormAct(
                factory.stem_conv(in_channels, inp, 3, 1 if small_input else 2),
                nn.BatchNorm2d(inp),
                nn.ReLU6(inplace=True),
            )
        ]
        dilation, current, shrink_stride = 1, 1 if small_input else 2, small_input
        for stage, (t, c, n, s) in enumerate(table):
            oup = factory.stage_channels(stage, c)
            if shrink_stride and s > 1:
                s, shrink_stride = 1, False
            first_dilation = dilation
            s, dilation, current = dilate(s, dilation, current, output_stride)
            for index in range(n):
                where = f"stage {stage} block {index}"
                if spec.expansion is None:
                    hidden, expand = int(round(inp * t)), t != 1
                else:
                    hidden = make_divisible(spec.expansion * oup, factory.multiple, "expansion", where)
                    expand = True
                b = factory.block(stage, index)
                features.append(
                    InvertedResidual(
                        b,
                        inp,
                        hidden,
                        oup,
                        s if index == 0 else 1,
                        first_dilation if index == 0 else dilation,
                        expand,
                        factory.depthwise_groups(hidden, where),
                    )
                )
                inp = oup
        self.features_only = features_only
        if not features_only:
            last = factory.fixed_channels(LAST_CHANNELS, max(1.0, spec.width_mult), "the last convolution")
            features.append(
                ConvNormAct(factory.head_conv(inp, last), nn.BatchNorm2d(last), nn.ReLU6(inplace=True))
            )
            inp = last
        self.features = nn.Sequential(*features)
        self.out_channels = inp
        if not features_only:
            self.classifier = nn.Sequential(nn.Dropout(p=dropout), factory.linear(inp, num_classes))
        init_static(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        if self.features_only:
            return x
        return self.classifier(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


@register_model
def mobilenet_v2(spec: DynamicSpec | None = None, **kwargs) -> MobileNetV2:
    """MobileNetV2 1.0 (torchvision's mobilenet_v2 with the default spec)."""
    return MobileNetV2(MOBILENET_V2_TABLE, spec, name="mobilenet_v2", **kwargs)
