"""Load torchvision checkpoints into models built here, static or dynamic. Nothing downloads.

The families keep torchvision's module names, so a torchvision ``state_dict`` maps key for key.
A static model loads it as is. In a dynamic model, each ``DynamicConv2d`` takes the static
kernel of its key through ``load_static`` (the initialisation ``DynamicConv2d.from_conv`` uses:
every base a share of the kernel plus zero-sum noise) and every coefficient predictor's output
layer is zeroed, so at initialisation the dynamic model computes the static one (exactly with
``noise=0``). Predictors themselves are new parameters, absent from the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from dynsweep.nn import CoefficientPredictor, DynamicConv2d, DynamicLinear


def _read(source: Mapping[str, Tensor] | str | os.PathLike) -> dict[str, Tensor]:
    if isinstance(source, (str, os.PathLike)):
        source = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(source, Mapping):
        raise ValueError(f"weights must be a state_dict or the path of one, got {type(source).__name__}")
    return dict(source)


def _shape_error(key: str, got: tuple[int, ...], want: tuple[int, ...]) -> ValueError:
    return ValueError(
        f"weights[{key!r}] has shape {list(got)} but the model expects {list(want)}: "
        "the spec changes this layer, so the file cannot initialise it"
    )


@torch.no_grad()
def load_torchvision_weights(
    model: nn.Module, weights: Mapping[str, Tensor] | str | os.PathLike, noise: float = 0.01
) -> nn.Module:
    """Load a torchvision ``state_dict`` (or a file ``torch.save``-d from one) into ``model``.

    ``noise`` is the relative std of the zero-sum noise that tells the bases of a dynamic layer
    apart (see ``DynamicConv2d.from_conv``). Every key of the file must be used, and every
    parameter of the model must come from the file except the predictors'; a key whose shape
    differs (a spec that changes channels) is a ``ValueError`` naming it. Returns ``model``.
    """
    state = _read(weights)
    own = model.state_dict()
    dynamic_keys = _dynamic_static_keys(model)  # checked against the static kernel shape below
    for key, value in state.items():
        if key in own and key not in dynamic_keys and own[key].shape != value.shape:
            raise _shape_error(key, tuple(value.shape), tuple(own[key].shape))
    unexpected = sorted(set(state) - set(own) - dynamic_keys)
    if unexpected:
        raise ValueError(f"weights has keys the model lacks: {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")

    # Check everything first, so a file that does not fit leaves the model untouched.
    new_keys: set[str] = set()  # parameters the file cannot provide: predictors, bases
    predictors, conversions = [], []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, CoefficientPredictor):
            predictors.append(module)
            new_keys.update(prefix + key for key in module.state_dict())
        if not isinstance(module, DynamicConv2d):
            continue
        new_keys.update(prefix + key for key in module.state_dict())
        key = prefix + "weight"
        if key not in state:
            raise ValueError(f"weights has no {key!r} for the dynamic layer {name!r}")
        weight, bias = state.pop(key), state.pop(prefix + "bias", None)
        if isinstance(module, DynamicLinear):
            weight = weight[:, :, None, None]
        expected = (module.out_channels, module.in_channels // module.groups, *module.kernel_size)
        if tuple(weight.shape) != expected:
            raise _shape_error(key, tuple(weight.shape), expected)
        if (bias is None) != (module.bias is None):
            raise ValueError(f"weights and model disagree on whether {name!r} has a bias")
        conversions.append((module, weight, bias))
    missing = sorted(set(own) - set(state) - new_keys)
    if missing:
        raise ValueError(f"weights lacks keys the model needs: {missing[:5]}{' ...' if len(missing) > 5 else ''}")

    for predictor in predictors:
        nn.init.zeros_(predictor.output_layer.weight)
        nn.init.zeros_(predictor.output_layer.bias)
    for module, weight, bias in conversions:
        dtype = module.weight.dtype
        module.load_static(weight.to(dtype), None if bias is None else bias.to(dtype), noise)
    model.load_state_dict(state, strict=False)
    return model


def _dynamic_static_keys(model: nn.Module) -> set[str]:
    """Keys a torchvision file has for the layers that are dynamic here (weight, bias)."""
    keys = set()
    for name, module in model.named_modules():
        if isinstance(module, DynamicConv2d):
            keys.update({f"{name}.weight", f"{name}.bias"} if name else {"weight", "bias"})
    return keys
