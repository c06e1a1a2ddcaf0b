"""BatchNorm folding: the folded network computes the same function in eval mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynsweep.models import build_model
from dynsweep.nn import COEFFICIENT_MODES, CoefficientPredictor, DynamicConv2d, fold_batchnorm


class Block(nn.Module):
    """Static stem, a dynamic conv with its own predictor, and a block-predicted pair."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.conv1 = DynamicConv2d(8, 12, 3, padding=1, bias=True, num_bases=3, mode=mode)
        self.bn1 = nn.BatchNorm2d(12)
        self.predictor = CoefficientPredictor(12, [(12, 2), (12, 2)], mode=mode, reduction=2)
        self.pw = DynamicConv2d(12, 12, 1, num_bases=2, mode=mode, shared_predictor=True)
        self.bn_pw = nn.BatchNorm2d(12)
        self.dw = DynamicConv2d(12, 12, 3, padding=1, groups=12, num_bases=2, mode=mode, shared_predictor=True)
        self.bn_dw = nn.BatchNorm2d(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(self.stem(x))))
        eta_pw, eta_dw = self.predictor(x)
        return self.bn_dw(self.dw(torch.relu(self.bn_pw(self.pw(x, eta_pw))), eta_dw)) + x


@pytest.mark.parametrize("mode", COEFFICIENT_MODES)
def test_folded_model_is_exact(mode: str) -> None:
    torch.manual_seed(0)
    model = Block(mode).double()
    for module in model.modules():  # non-trivial statistics and affine parameters
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(3, 3, 10, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))
        assert folded(x[:1]).shape == (1, 12, 10, 10)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "the original stays untouched"


@pytest.mark.parametrize("preset", ["dy_mobilenet_v2", "dy_resnet18", "dy_shufflenet_v2"])
def test_folded_channels_last_preset_at_batch_one(preset: str) -> None:
    """The benchmarked inference form (folded, channels-last, batch 1) equals the eval model."""
    torch.manual_seed(0)
    model = build_model(preset).eval()
    x = torch.randn(1, 3, 64, 64)
    expected = model(x).detach()  # autograd on: the general path
    folded = fold_batchnorm(model).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x.to(memory_format=torch.channels_last)), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fold_batchnorm(model)(x), expected, rtol=1e-4, atol=1e-4)


def test_shared_conv_output_is_not_folded() -> None:
    """A conv whose output also feeds something else than the BN must keep the BN."""

    class Fork(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = DynamicConv2d(4, 4, 1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y

    model = Fork().eval()
    model.bn.running_mean.fill_(0.3)
    folded = fold_batchnorm(model)
    assert any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(folded(x), model(x))
