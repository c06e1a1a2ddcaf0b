"""DynamicLinear: a fully connected layer whose weight is fused per sample from several bases.

The Linear form of DyNet's dynamic convolution (Zhang et al., arXiv 2004.10694), used where a
dynamic network's classifier is dynamic: a 1x1 :class:`DynamicConv2d` applied to a ``[B, C]``
input.
"""

from __future__ import annotations

from torch import Tensor

from dynsweep.nn.dynamic_conv import DynamicConv2d


class DynamicLinear(DynamicConv2d):
    """A ``Linear`` layer as a 1x1 dynamic convolution on a ``[B, C]`` input (with a bias).

    Its weight is ``[out, num_bases, in, 1, 1]``; a torchvision Linear weight loads through
    ``load_static(weight[:, :, None, None], bias)``. Further keyword arguments are
    :class:`DynamicConv2d`'s (``num_bases``, ``mode``, ``reduction``, ``temperature``).
    """

    def __init__(self, in_features: int, out_features: int, **dynamic_kwargs) -> None:
        super().__init__(in_features, out_features, 1, bias=True, **dynamic_kwargs)
        self.in_features = in_features
        self.out_features = out_features

    def forward(self, x: Tensor, coefficients: Tensor | None = None) -> Tensor:
        return super().forward(x[:, :, None, None], coefficients).flatten(1)
