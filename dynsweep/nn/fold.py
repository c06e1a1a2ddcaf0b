"""Fold BatchNorm into the preceding convolution, for inference.

Exact in eval mode: BatchNorm scales and shifts each output channel, and a dynamic kernel's
output channel ``t`` is linear in its bases ``w_t^i``, so the scale folds into every base (and
fused bias) of that channel, and the shift becomes a coefficient-independent output bias.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from dynsweep.nn.dynamic_conv import DynamicConv2d
from dynsweep.nn.predictor import CoefficientPredictor


@torch.no_grad()
def fold_batchnorm_into(conv: DynamicConv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode ``bn`` that directly follows ``conv`` into ``conv``'s bases, in place."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError("bn must track running statistics (track_running_stats=True) to be folded")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"bn.num_features={bn.num_features} must equal conv.out_channels={conv.out_channels}")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    conv.weight.mul_(scale.view(-1, 1, 1, 1, 1).to(conv.weight.dtype))
    if conv.bias is not None:
        conv.bias.mul_(scale.view(-1, 1).to(conv.bias.dtype))
    if conv.output_bias is not None:
        shift = shift + conv.output_bias * scale
    conv.output_bias = nn.Parameter(shift.to(conv.weight.dtype))


class _LeafTracer(fx.Tracer):
    """Traces through containers but keeps the dynamic operator and its predictor as single calls."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if isinstance(module, (DynamicConv2d, CoefficientPredictor)):
            return True
        return super().is_leaf_module(module, qualified_name)


def fold_batchnorm(model: nn.Module) -> fx.GraphModule:
    """A copy of ``model`` in eval mode with every (dynamic) conv -> BatchNorm2d pair folded.

    Traced with ``torch.fx``; a BatchNorm is folded when it is the only consumer of a
    convolution's output. The result computes the same function as ``model.eval()``; its wide
    Linear layers (predictors, classifiers) get the batch-1 layout of :func:`gemv_layout_`.
    """
    model = copy.deepcopy(model).eval()
    graph = _LeafTracer().trace(model)
    module = fx.GraphModule(model, graph)
    modules = dict(module.named_modules())
    for node in list(module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        producer = node.args[0]
        if not isinstance(producer, fx.Node) or producer.op != "call_module" or len(producer.users) != 1:
            continue
        conv, bn = modules[producer.target], modules[node.target]
        if isinstance(conv, DynamicConv2d):
            fold_batchnorm_into(conv, bn)
        elif isinstance(conv, nn.Conv2d):
            # A call_module node's target is the module's qualified name.
            _replace_module(module, cast(str, producer.target), fuse_conv_bn_eval(conv, bn))
        else:
            continue
        node.replace_all_uses_with(producer)
        module.graph.erase_node(node)
    module.graph.eliminate_dead_code()
    module.delete_all_unused_submodules()
    module.recompile()
    gemv_layout_(module)
    return module


@torch.no_grad()
def gemv_layout_(model: nn.Module) -> nn.Module:
    """Store the weight of every ``nn.Linear`` with ``out_features >= in_features`` column-major.

    Same shape and values. At batch 1 a Linear is a matrix-vector product, and with short rows
    (a predictor's ``C -> C * K`` layer) the row-major product runs 2-3x below memory bandwidth.
    """
    for layer in model.modules():
        if isinstance(layer, nn.Linear) and layer.out_features >= layer.in_features:
            weight = layer.weight
            layer.weight = nn.Parameter(weight.t().contiguous().t(), requires_grad=weight.requires_grad)
    return model


def _replace_module(root: nn.Module, target: str, replacement: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, name, replacement)
