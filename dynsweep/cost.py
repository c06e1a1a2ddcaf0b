"""Cost accounting: multiply-accumulates (MACs) and parameters, per module and per kind.

Counts what DyNet (Zhang et al., arXiv 2004.10694) calls FLOPs, which are multiply-adds: one
MAC is one multiplication plus one addition. Only convolutions, linear layers, coefficient
predictors and kernel/feature fusion are counted, as ``torch.utils.flop_counter.FlopCounterMode``
does (its FLOPs are ``2 * MACs``); BatchNorm, activations, pooling and bias additions are not.

Every count belongs to one *kind*:

- ``"static"``: ordinary convolutions (``nn.Conv*d``, ``nn.ConvTranspose*d``) and ``nn.Linear``.
- ``"predictor"``: the layers of a :class:`~dynsweep.nn.CoefficientPredictor`, whether it is owned
  by one :class:`~dynsweep.nn.DynamicConv2d` or serves a whole block.
- ``"fusion"``: combining the bases. In inference (default), kernel fusion (Eq. 1):
  ``out * K * in/groups * kH * kW`` per sample, plus ``out * K`` for a fused bias. With
  ``training=True``, feature fusion (Eq. 2): the weighted sum ``out * K * H_out * W_out`` per
  sample (plus ``out * K`` for a fused bias), and no kernel fusion.
- ``"dynamic_conv"``: the convolution of a DynamicConv2d: ``out * in/groups * kH * kW * H_out *
  W_out`` per sample with the fused kernel, ``num_bases`` times that with ``training=True``.
- ``"other"`` (parameters only): every parameter outside the above, e.g. BatchNorm's.

The counts come from one forward pass with forward hooks (see :func:`count`), so they follow the
model's real control flow: a module called twice is counted twice, one that is never called is
not counted (its parameters still are).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch
from torch import nn

from dynsweep import compat
from dynsweep.nn import CoefficientPredictor, DynamicConv2d

if TYPE_CHECKING:
    import pandas as pd

KINDS = ("static", "predictor", "fusion", "dynamic_conv", "other")
"""Every kind a :class:`CostReport` reports, in the order of ``by_kind``."""


class KindCost(NamedTuple):
    """MACs and parameters of one kind (a plain ``(macs, params)`` tuple with names)."""

    macs: int
    params: int


@dataclass
class ModuleCost:
    """One row of the per-module table.

    A DynamicConv2d has two rows under its name: ``"dynamic_conv"`` (its convolution and its
    bases) and ``"fusion"`` (no parameters). ``calls`` counts the forward calls seen; ``macs``
    is summed over them, ``params`` counted once.
    """

    name: str
    type: str
    kind: str
    macs: int = 0
    params: int = 0
    calls: int = 0


@dataclass
class CostReport:
    """MACs and parameters of one forward pass, in total, per kind and per module.

    ``macs`` are multiply-accumulates for the whole batch of ``input_size`` (batch 1 unless a
    batch was given); ``params`` is ``sum(p.numel() for p in model.parameters())``. ``by_kind``
    maps every kind of :data:`KINDS` to ``(macs, params)``; ``by_module`` lists the rows in
    module order. ``input_size`` is the counted ``(B, C, H, W)``; ``training`` the form counted.
    """

    macs: int
    params: int
    by_kind: dict[str, KindCost]
    by_module: list[ModuleCost]
    input_size: tuple[int, int, int, int]
    training: bool

    def to_dataframe(self) -> pd.DataFrame:
        """The per-module table: columns ``name, type, kind, macs, params, calls``."""
        import pandas as pd

        columns = ["name", "type", "kind", "macs", "params", "calls"]
        return pd.DataFrame([[getattr(row, column) for column in columns] for row in self.by_module], columns=columns)


def _check_input_size(input_size: Sequence[int]) -> tuple[int, int, int, int]:
    message = f"input_size must be (C, H, W) or (B, C, H, W) of positive integers, got {input_size!r}"
    if isinstance(input_size, (str, bytes)) or not isinstance(input_size, Sequence):
        raise ValueError(message)
    if len(input_size) not in (3, 4) or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in input_size
    ):
        raise ValueError(message)
    size = tuple(int(v) for v in input_size)
    return cast("tuple[int, int, int, int]", size if len(size) == 4 else (1, *size))


def _device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter or buffer."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _static_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    """MACs of one call of a convolution or linear layer, bias excluded (FlopCounterMode's rule)."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    # Any convolution (compat.conv_base()): nn.Conv2d types the attributes they all share.
    conv = cast(nn.Conv2d, module)
    kernel = math.prod(conv.kernel_size)
    if conv.transposed:  # every input pixel scatters into out/groups channels
        return inputs[0].numel() * (conv.out_channels // conv.groups) * kernel
    return output.numel() * (conv.in_channels // conv.groups) * kernel


def dynamic_conv_macs(
    layer: DynamicConv2d, batch: int, output_size: Sequence[int], training: bool = False
) -> tuple[int, int]:
    """``(convolution MACs, fusion MACs)`` of one call of ``layer`` (its predictor excluded).

    ``output_size`` is the spatial ``(H_out, W_out)``. Inference fuses kernels, then convolves
    once; training (the paper's Eq. 2) convolves with every base, then sums the weighted maps.
    A bias is fused with the coefficients in both forms (``out * num_bases`` per sample).
    """
    out, bases = layer.out_channels, layer.num_bases
    kernel = (layer.in_channels // layer.groups) * math.prod(layer.kernel_size)
    pixels = math.prod(output_size)
    bias = out * bases if layer.bias is not None else 0
    if training:
        return batch * out * bases * kernel * pixels, batch * (out * bases * pixels + bias)
    return batch * out * kernel * pixels, batch * (out * bases * kernel + bias)


def count(model: nn.Module, input_size: Sequence[int], *, training: bool = False) -> CostReport:
    """Count the MACs and parameters of ``model`` on one input of ``input_size``.

    ``input_size`` is ``(C, H, W)`` (batch 1) or ``(B, C, H, W)``; MACs are for that whole batch.
    One forward pass runs on a zero input of the model's device and dtype, in eval mode and under
    ``torch.no_grad``; every module's training flag is restored afterwards. ``training=True``
    counts the forward pass of the paper's training form (feature fusion) instead of the fused
    inference form; the backward pass is never counted. The model's own choice of execution
    strategy does not change the count: it accounts for the algorithm, not the implementation.
    """
    size = _check_input_size(input_size)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")

    rows: list[ModuleCost] = []
    hooked: list[tuple[nn.Module, Any]] = []  # (module, hook function)
    seen_modules: set[int] = set()
    seen_params: set[int] = set()

    def own_params(module: nn.Module) -> int:
        total = 0
        for p in module.parameters(recurse=False):
            if id(p) not in seen_params:
                seen_params.add(id(p))
                total += p.numel()
        return total

    def claim(module: nn.Module, prefix: str, row: ModuleCost) -> None:
        """Give the parameters of ``module``'s subtree to ``row``; predictors below stay their own."""
        for name, child in module.named_children():
            if id(child) in seen_modules:
                continue
            child_name = f"{prefix}.{name}" if prefix else name
            if isinstance(child, CoefficientPredictor) and row.kind != "predictor":
                visit(child, child_name)
                continue
            seen_modules.add(id(child))
            row.params += own_params(child)
            if row.kind == "predictor" and isinstance(child, (compat.conv_base(), nn.Linear)):
                hooked.append((child, _predictor_layer_hook(row)))
            claim(child, child_name, row)

    def visit(module: nn.Module, name: str) -> None:
        if id(module) in seen_modules:
            return
        seen_modules.add(id(module))
        type_name = type(module).__name__
        if isinstance(module, CoefficientPredictor):
            row = ModuleCost(name, type_name, "predictor", params=own_params(module))
            rows.append(row)
            hooked.append((module, _calls_hook(row)))
            claim(module, name, row)
        elif isinstance(module, DynamicConv2d):
            conv = ModuleCost(name, type_name, "dynamic_conv", params=own_params(module))
            fusion = ModuleCost(name, type_name, "fusion")
            rows.extend((conv, fusion))
            hooked.append((module, _dynamic_hook(conv, fusion, training)))
            claim(module, name, conv)
        elif isinstance(module, (compat.conv_base(), nn.Linear)):
            row = ModuleCost(name, type_name, "static", params=own_params(module))
            rows.append(row)
            hooked.append((module, _static_hook(row)))
            claim(module, name, row)
        else:
            params = own_params(module)
            if params:
                rows.append(ModuleCost(name, type_name, "other", params=params))
            for child_name, child in module.named_children():
                visit(child, f"{name}.{child_name}" if name else child_name)

    visit(model, "")

    device, dtype = _device_and_dtype(model)
    flags = [(module, module.training) for module in model.modules()]
    handles = [module.register_forward_hook(hook) for module, hook in hooked]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(size, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in flags:
            module.training = flag

    by_kind = {
        kind: KindCost(
            sum(row.macs for row in rows if row.kind == kind),
            sum(row.params for row in rows if row.kind == kind),
        )
        for kind in KINDS
    }
    return CostReport(
        macs=sum(cost.macs for cost in by_kind.values()),
        params=sum(cost.params for cost in by_kind.values()),
        by_kind=by_kind,
        by_module=rows,
        input_size=size,
        training=training,
    )


def _static_hook(row: ModuleCost):
    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        row.macs += _static_macs(module, inputs, output)
        row.calls += 1

    return hook


def _predictor_layer_hook(row: ModuleCost):
    """Adds a predictor's inner layer's MACs to the predictor's row (its calls are counted there)."""

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        row.macs += _static_macs(module, inputs, output)

    return hook


def _calls_hook(row: ModuleCost):
    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        row.calls += 1

    return hook


def _dynamic_hook(conv: ModuleCost, fusion: ModuleCost, training: bool):
    def hook(module: DynamicConv2d, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        conv_macs, fusion_macs = dynamic_conv_macs(module, output.shape[0], output.shape[2:], training)
        conv.macs += conv_macs
        fusion.macs += fusion_macs
        conv.calls += 1
        fusion.calls += 1

    return hook
