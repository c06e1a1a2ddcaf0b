"""Modules and forward helpers shared by the model families (the layers are made by
:mod:`dynsweep.models._builder`).

A block runs its modules through :func:`run` with the coefficients :func:`block_coefficients`
gets from its predictor: each dynamic layer served by the block's predictor reads
``coefficients[layer.coefficient_slot]``, the slot it was given when it was built.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeGuard, cast

from torch import Tensor, nn

from dynsweep.nn import CoefficientPredictor, DynamicConv2d, DynamicLinear

if TYPE_CHECKING:
    from dynsweep.models._builder import BlockBuilder

Coefficients = list[Tensor] | None
"""A block's coefficients: its predictor's output, one tensor per slot; None without a predictor."""


class ConvNormAct(nn.Sequential):
    """Conv, BatchNorm, optional activation; indexed ``0, 1, 2`` like torchvision's
    ``Conv2dNormActivation`` so state_dict keys match."""

    def __init__(self, conv: nn.Module, norm: nn.Module, activation: nn.Module | None = None) -> None:
        super().__init__(conv, norm, *([activation] if activation is not None else []))
        self.out_channels = cast(int, norm.num_features)  # a BatchNorm's channel count


def is_shared(module: nn.Module) -> TypeGuard[DynamicConv2d]:
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
        # The builder gives every shared layer its slot.
        return module(x, coefficients[cast(int, module.coefficient_slot)])
    if type(module) in (nn.Sequential, ConvNormAct):
        for child in cast(nn.Sequential, module):
            x = run(child, x, coefficients)
        return x
    return module(x)


class Backbone(nn.Module):
    """What every family's network shares (timm's split): ``forward`` is ``forward_features``
    and, unless the network was built with ``features_only=True``, ``forward_head``."""

    features_only: bool
    out_channels: int  # the channels of forward_features' output

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)
        return x if self.features_only else self.forward_head(x)


class InvertedResidualBase(nn.Module):
    """What the MobileNets' blocks share: one ``nn.Sequential`` body run with the block's
    coefficients (its predictor reads the block input), plus the input where the shape allows."""

    def __init__(self, b: BlockBuilder, body_name: str, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.body_name = body_name  # torchvision's name for the body, so state_dict keys match
        self.add_module(body_name, nn.Sequential(*layers))
        self.use_res_connect = b.stride == 1 and b.in_channels == b.channels
        self.out_channels = b.channels
        self.predictor = b.predictor(b.in_channels)

    def forward(self, x: Tensor) -> Tensor:
        out = run(getattr(self, self.body_name), x, block_coefficients(self.predictor, x))
        return x + out if self.use_res_connect else out


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
