"""The batch-1 inference form: BatchNorm folded, each predictor and dynamic layer one lean call.

At batch 1 a dynamic layer's cost beyond its convolution is mostly per-call work: the module
call, the checks of the general ``forward``, the reshapes. :func:`batch1_form` folds BatchNorm
(:func:`~dynsweep.nn.fold_batchnorm`) and then swaps, in the traced graph, every ``dynet``-mode
:class:`CoefficientPredictor` and every :class:`DynamicConv2d` for a module that does only the
arithmetic, with its tensors arranged once: the predictor's matrix-vector products and one
sigmoid, its output cut into per-layer views; each layer's fusion (one ``bmm``, or one broadcast
product for small kernels) and its convolution. The result computes the same function as the
folded model (the same operations on the same values) and takes this path only for one sample
without autograd or autocast; any other call runs the folded model.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from dynsweep.nn.dynamic_conv import MATMUL_FUSION_MIN_SIZE, DynamicConv2d
from dynsweep.nn.fold import fold_batchnorm
from dynsweep.nn.predictor import CoefficientPredictor, plain_inference


class _Batch1Predictor(nn.Module):
    """A ``dynet``-mode predictor at batch 1: ``[O, 1, K]`` coefficient views, one per layer."""

    def __init__(self, predictor: CoefficientPredictor) -> None:
        super().__init__()
        self.predictor = predictor
        self.slices = []
        start = 0
        for (out, num_bases), size in zip(predictor.layer_outputs, predictor.split_sizes):
            self.slices.append((start, start + size, out, num_bases))
            start += size

    def forward(self, x: Tensor) -> list[Tensor]:
        total, scale = x.sum(dim=(2, 3))[0], 1.0 / (x.shape[2] * x.shape[3])
        fc = self.predictor.fc
        if isinstance(fc, nn.Linear):
            z = torch.addmv(fc.bias, fc.weight, total, alpha=scale)
        else:
            first, _, last = cast("tuple[nn.Linear, nn.ReLU, nn.Linear]", fc)  # as CoefficientPredictor builds it
            z = torch.addmv(last.bias, last.weight, torch.addmv(first.bias, first.weight, total, alpha=scale).relu_())
        z = z.sigmoid_()
        return [z[start:end].view(out, 1, num_bases) for start, end, out, num_bases in self.slices]


class _Batch1Conv(nn.Module):
    """A dynamic layer at batch 1 with contiguous bases: fuse, then convolve (1x1: one matmul)."""

    # Buffers registered in __init__; the biases are None together, when the layer has no output_bias.
    bases: Tensor
    bias: Tensor | None
    column_bias: Tensor | None

    def __init__(self, layer: DynamicConv2d) -> None:
        super().__init__()
        self.layer = layer
        out, num_bases = layer.out_channels, layer.num_bases
        # Views of the layer's tensors, as buffers so that Module.to moves them too.
        self.register_buffer("bases", layer.weight.detach().reshape(out, num_bases, -1), persistent=False)
        bias = layer.output_bias
        self.register_buffer("bias", None if bias is None else bias.detach(), persistent=False)
        self.register_buffer("column_bias", None if bias is None else bias.detach()[:, None], persistent=False)
        self.by_matmul = self.bases.shape[-1] >= MATMUL_FUSION_MIN_SIZE
        self.pointwise = layer.kernel_size == (1, 1) and layer.padding == (0, 0) and layer.groups == 1
        self.kernel_shape = (out, layer.in_channels // layer.groups, *layer.kernel_size)
        self.out, self.num_bases = out, num_bases

    def forward(self, x: Tensor, coefficients: Tensor | None = None) -> Tensor:
        if coefficients is None:
            coefficients = self.layer.coefficients(x)
        coefficients = coefficients.view(self.out, 1, self.num_bases)
        if self.by_matmul:
            weight = torch.bmm(coefficients, self.bases).view(self.out, -1)
        else:
            weight = (self.bases * coefficients.view(self.out, self.num_bases, 1)).sum(1)
        layer = self.layer
        if self.pointwise:
            if layer.stride != (1, 1):
                x = x[:, :, :: layer.stride[0], :: layer.stride[1]]
            _, channels, height, width = x.shape
            columns = x.reshape(channels, height * width)
            y = (
                torch.mm(weight, columns)
                if self.bias is None
                else torch.addmm(cast(Tensor, self.column_bias), weight, columns)
            )
            return y.view(1, self.out, height, width)
        return F.conv2d(
            x, weight.view(self.kernel_shape), self.bias, layer.stride, layer.padding, layer.dilation, layer.groups
        )


def _lean(module: nn.Module) -> nn.Module | None:
    """The lean batch-1 module for ``module``, or None where the general path must run."""
    if isinstance(module, CoefficientPredictor) and module.mode == "dynet":
        return _Batch1Predictor(module)
    if (
        type(module) is DynamicConv2d
        and module.bias is None
        and module._explicit_pad is None
        and module.strategy == "auto"
        and module.weight.is_contiguous()
        and (module.predictor is None or module.predictor.mode == "dynet")
    ):
        return _Batch1Conv(module)
    return None


class Batch1Form(nn.Module):
    """``folded`` with a lean graph for one sample without autograd or autocast (see the module
    docstring); any other call runs ``folded``."""

    def __init__(self, folded: fx.GraphModule) -> None:
        super().__init__()
        self.folded = folded
        lean = fx.GraphModule(folded, copy.deepcopy(folded.graph))
        for index, node in enumerate(lean.graph.nodes):
            if node.op == "call_module":
                replacement = _lean(folded.get_submodule(node.target))
                if replacement is not None:  # a new top-level name: the folded model's modules stay
                    node.target = f"batch1_{index}"
                    lean.add_submodule(node.target, replacement)
        lean.recompile()
        self.lean = lean

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] == 1 and x.dtype == torch.float32 and plain_inference(x):
            return self.lean(x)
        return self.folded(x)


def batch1_form(model: nn.Module) -> Batch1Form:
    """A copy of ``model`` in eval mode with BatchNorm folded and the lean batch-1 path."""
    return Batch1Form(fold_batchnorm(model))
