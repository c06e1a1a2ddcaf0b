"""The batch-1 inference form (dynsweep.nn.inference): the same function as the folded model, its
lean path taken only for one sample without autograd, every predictor and dynamic layer swapped."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynsweep.models import build_model
from dynsweep.nn import CoefficientPredictor, DynamicConv2d, fold_batchnorm
from dynsweep.nn.inference import Batch1Form, batch1_form

PRESETS = ["dy_resnet18", "dy_mobilenet_v2", "dy_shufflenet_v2", "dy_resnet50"]


def model_with_statistics(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(name, small_input=True, num_classes=10, **kwargs).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding is not the identity
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)
    return model


def lean_calls(form: Batch1Form) -> list[int]:
    """Counts calls of the lean modules (a forward pre-hook on each)."""
    calls = [0]
    for module in form.lean.children():
        if type(module).__name__.startswith("_Batch1"):
            module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("name", PRESETS)
def test_batch1_form_equals_the_folded_model(name: str) -> None:
    model = model_with_statistics(name)
    form, folded = batch1_form(model), fold_batchnorm(model)
    swapped = [type(m).__name__ for m in form.lean.children() if type(m).__name__.startswith("_Batch1")]
    dynamic = sum(isinstance(m, DynamicConv2d) for m in model.modules())
    predictors = sum(isinstance(m, CoefficientPredictor) for m in model.modules())
    assert swapped.count("_Batch1Conv") == dynamic and swapped.count("_Batch1Predictor") == predictors
    calls = lean_calls(form)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        got, expected = form(x), folded(x)
    assert calls[0] == dynamic + predictors, "the lean path did not run"
    assert torch.equal(got, expected), "the same operations on the same values give the same bits"


def test_batch1_form_runs_the_folded_model_otherwise() -> None:
    model = model_with_statistics("dy_resnet18")
    form, folded = batch1_form(model), fold_batchnorm(model)
    calls = lean_calls(form)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        torch.testing.assert_close(form(x), folded(x))  # a batch of 3
    one = x[:1].clone().requires_grad_(True)
    form(one).sum().backward()  # autograd: the general, differentiable path
    assert one.grad is not None
    assert calls[0] == 0


def test_batch1_form_keeps_other_coefficient_modes_on_the_general_path() -> None:
    model = model_with_statistics("dy_resnet18", spec={"mode": "dyconv"})
    form, folded = batch1_form(model), fold_batchnorm(model)
    assert not any(type(m).__name__ == "_Batch1Predictor" for m in form.lean.children())
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        torch.testing.assert_close(form(x), folded(x))
