"""Coefficient prediction module (CPM) of DyNet, CondConv and DY-CNN.

DyNet (Zhang et al., 2020, arXiv 2004.10694) predicts one sigmoid coefficient per
(output channel, kernel base); CondConv (Yang et al., NeurIPS 2019) one sigmoid routing weight
per base; DY-CNN (Chen et al., CVPR 2020) one softmax(z / T) attention weight per base. The
predictor is global average pooling, then ``Linear -> ReLU -> Linear`` (or one ``Linear``), then
the mode's activation. It has no BatchNorm, so training at batch size 1 works.

One predictor can serve several dynamic layers from one pooled input: the paper's design of one
CPM per block, emitting the coefficients of every dynamic layer of the block in one vector.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from dynsweep import compat

COEFFICIENT_MODES = ("dynet", "condconv", "dyconv")

_GLOBAL_FORWARD_HOOKS, _GLOBAL_FORWARD_PRE_HOOKS = compat.global_module_hooks()


def autocast_disabled(device_type: str) -> contextlib.AbstractContextManager:
    """Leave autocast for a block computed in full precision (a no-op when autocast is off)."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def plain_inference(x: Tensor) -> bool:
    """True where no autograd, autocast or compiler tracing is active: eager inference may skip them.

    The batch-1 fast paths key on this; any other call takes the general, differentiable path.
    CUDA-graph capture may take the fast path: it has no host synchronisation, and replay equals
    eager.
    """
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return False
    device = x.device.type
    return not (torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device))


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is a known coefficient mode, else raise a ValueError naming them."""
    if mode not in COEFFICIENT_MODES:
        raise ValueError(f"mode must be one of {COEFFICIENT_MODES}, got {mode!r}")
    return mode


def check_reduction(
    reduction: object, in_channels: int | None = None, *, name: str = "reduction", where: str = ""
) -> None:
    """The one check of a predictor's ``reduction``: None, or an integer >= 1 that leaves at least
    one hidden unit for ``in_channels`` (not checked when None).

    ``name`` is the field the message names (``DynamicSpec.reduction`` for a spec) and ``where``
    says which predictor of a model it is (`` in stage 0 block 1 of resnet18``).
    """
    if reduction is None:
        return
    if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
        raise ValueError(f"{name}: must be None or an integer >= 1, got {reduction!r}")
    if in_channels is not None and in_channels // reduction < 1:
        raise ValueError(
            f"{name}: {reduction} leaves no hidden units for the {in_channels} input channels of the "
            f"predictor{where}; use at most {in_channels} or None"
        )


def hidden_width(in_channels: int, reduction: int | None) -> int | None:
    """Hidden width of the predictor's two-layer MLP, or None for a single linear layer."""
    check_reduction(reduction, in_channels)
    return None if reduction is None else in_channels // reduction


class CoefficientPredictor(nn.Module):
    """Predicts the kernel-fusion coefficients of one or more dynamic layers from one input.

    ``layer_outputs`` lists ``(out_channels, num_bases)`` for each served layer. ``forward``
    returns one tensor ``[B, out_channels, num_bases]`` per layer; in the per-base modes
    (``condconv``, ``dyconv``) it is the per-base value broadcast over the output channels.
    """

    temperature: Tensor  # a buffer, registered in mode "dyconv" only

    def __init__(
        self,
        in_channels: int,
        layer_outputs: Sequence[tuple[int, int]],
        mode: str = "dynet",
        reduction: int | None = 4,
        temperature: float = 30.0,
    ) -> None:
        super().__init__()
        check_mode(mode)
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if not layer_outputs:
            raise ValueError("layer_outputs must name at least one (out_channels, num_bases) pair")
        for out_channels, num_bases in layer_outputs:
            if out_channels < 1 or num_bases < 1:
                raise ValueError(
                    "layer_outputs entries must be (out_channels >= 1, num_bases >= 1), "
                    f"got {(out_channels, num_bases)}"
                )
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.in_channels = in_channels
        self.mode = mode
        self.reduction = reduction
        self.layer_outputs = [(int(c), int(k)) for c, k in layer_outputs]
        # Per-layer width of the predicted vector: one value per (channel, base) or per base.
        self.split_sizes = [c * k if mode == "dynet" else k for c, k in self.layer_outputs]
        total = sum(self.split_sizes)
        hidden = hidden_width(in_channels, reduction)
        self.fc: nn.Linear | nn.Sequential
        if hidden is None:
            self.fc = nn.Linear(in_channels, total)
        else:
            self.fc = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, total))
        if mode == "dyconv":
            self.register_buffer("temperature", torch.tensor(float(temperature)))

    @property
    def output_layer(self) -> nn.Linear:
        """The last linear layer, whose output is split among the served layers."""
        return self.fc if isinstance(self.fc, nn.Linear) else cast(nn.Linear, self.fc[-1])

    def set_temperature(self, temperature: float) -> None:
        """Set the softmax temperature of ``dyconv`` (annealed from about 30 to 1 in DY-CNN)."""
        if self.mode != "dyconv":
            raise ValueError(f"temperature applies to mode='dyconv' only, this predictor is {self.mode!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature.fill_(float(temperature))

    def forward(self, x: Tensor) -> list[Tensor]:
        if (
            x.shape[0] == 1
            and x.dtype == self.output_layer.weight.dtype
            and plain_inference(x)
            and not self._fc_hooked()
        ):
            logits = self._single_logits(x)
        else:
            # Coefficients steer every kernel of the layer: compute them in float32 under autocast.
            with autocast_disabled(x.device.type):
                pooled = x.mean(dim=(2, 3))
                dtype = torch.promote_types(pooled.dtype, self.output_layer.weight.dtype)
                logits = self.fc(pooled.to(dtype))
                if self.mode != "dyconv":  # one sigmoid for every served layer
                    logits = torch.sigmoid(logits)
        if len(self.layer_outputs) == 1:
            return [self._arrange(logits, *self.layer_outputs[0])]
        return [self._arrange(z, *shape) for shape, z in zip(self.layer_outputs, logits.split(self.split_sizes, dim=1))]

    def _fc_hooked(self) -> bool:
        """True when a forward hook would see ``fc``'s modules (a MAC counter, a feature probe):
        the batch-1 path does not call them, so it must not run then."""
        if _GLOBAL_FORWARD_HOOKS or _GLOBAL_FORWARD_PRE_HOOKS:
            return True
        fc = cast(nn.Module, self._modules["fc"])  # a Linear or a flat Sequential: its children are all its modules
        if fc._forward_hooks or fc._forward_pre_hooks:
            return True
        # A loop, not any(): this runs on every batch-1 call. torch types children as optional; fc's are set.
        for module in cast("dict[str, nn.Module]", fc._modules).values():
            if module._forward_hooks or module._forward_pre_hooks:
                return True
        return False

    def _single_logits(self, x: Tensor) -> Tensor:
        """Activated logits ``[1, total]`` of one sample, as matrix-vector products with in-place
        activations: at batch 1 the predictor's cost is its number of eager ops. Reads ``fc``'s
        parameters without calling its modules (so it runs only when no hook is on them)."""
        # The pooling's 1 / (H * W) rides on the first product's alpha.
        total, scale = x.sum(dim=(2, 3))[0], 1.0 / (x.shape[2] * x.shape[3])
        if isinstance(self.fc, nn.Linear):
            z = torch.addmv(self.fc.bias, self.fc.weight, total, alpha=scale)
        else:
            first, _, last = cast("tuple[nn.Linear, nn.ReLU, nn.Linear]", self.fc)  # as built in __init__
            hidden = torch.addmv(first.bias, first.weight, total, alpha=scale).relu_()
            z = torch.addmv(last.bias, last.weight, hidden)
        if self.mode != "dyconv":
            z = z.sigmoid_()
        return z[None]

    def _arrange(self, z: Tensor, out_channels: int, num_bases: int) -> Tensor:
        """One layer's activated coefficients as ``[B, out_channels, num_bases]``."""
        if self.mode == "dynet":
            return z.reshape(-1, out_channels, num_bases)
        if self.mode == "dyconv":
            z = torch.softmax(z / self.temperature, dim=1)
        return z[:, None, :].expand(-1, out_channels, num_bases)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, layer_outputs={self.layer_outputs}, mode={self.mode!r}"
