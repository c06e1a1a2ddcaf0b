"""DynamicConv2d: every strategy equals a naive per-sample reference, in value and gradient."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dynsweep.nn import COEFFICIENT_MODES, CoefficientPredictor, DynamicConv2d

EXACT_STRATEGIES = ("feature", "grouped", "matmul")


def reference_forward(layer: DynamicConv2d, x: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Loop over the batch: F.conv2d with each sample's fused kernel (Eq. 1), written out by hand."""
    outputs = []
    for sample, eta in zip(x, coefficients):
        kernel = (eta[:, :, None, None, None] * layer.weight).sum(dim=1)
        bias = None if layer.bias is None else (eta * layer.bias).sum(dim=1)
        outputs.append(
            F.conv2d(sample[None], kernel, bias, layer.stride, layer.padding_arg, layer.dilation, layer.groups)
        )
    return torch.cat(outputs)


def random_config(rng: random.Random) -> dict:
    groups = rng.choice([1, 1, 2, 3])
    depthwise = rng.random() < 0.3
    in_channels = groups * rng.randint(1, 4)
    out_channels = groups * rng.randint(1, 4)
    if depthwise:
        groups = in_channels
        out_channels = in_channels * rng.choice([1, 2])
    kernel = (rng.choice([1, 2, 3, 5]), rng.choice([1, 3, 4]))
    stride = (rng.choice([1, 2]), rng.choice([1, 2, 3]))
    dilation = (rng.choice([1, 2]), rng.choice([1, 2]))
    padding: object = (rng.randint(0, 2), rng.randint(0, 2))
    if stride == (1, 1) and rng.random() < 0.3:
        padding = "same"
    return dict(
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=rng.random() < 0.5,
        num_bases=rng.randint(1, 5),
        mode=rng.choice(COEFFICIENT_MODES),
        reduction=rng.choice([None, 1, 2]) if in_channels >= 2 else rng.choice([None, 1]),
    )


CONFIGS = [random_config(random.Random(seed)) for seed in range(24)]


@pytest.mark.parametrize("config", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
@pytest.mark.parametrize("strategy", EXACT_STRATEGIES)
def test_strategy_matches_reference(config: dict, strategy: str) -> None:
    torch.manual_seed(0)
    layer = DynamicConv2d(**config, strategy=strategy).double()
    x = torch.randn(3, config["in_channels"], 13, 11, dtype=torch.float64)
    coefficients = layer.coefficients(x)
    expected = reference_forward(layer, x, coefficients)
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("config", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
@pytest.mark.parametrize("context", [torch.inference_mode, torch.no_grad])
def test_batch_one_inference_matches_reference(config: dict, context) -> None:
    """The batch-1 inference fast path (no autograd), in both memory layouts."""
    torch.manual_seed(0)
    layer = DynamicConv2d(**config).double().eval()
    x = torch.randn(1, config["in_channels"], 13, 11, dtype=torch.float64)
    expected = reference_forward(layer, x, layer.coefficients(x))
    with context():
        torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)
        y = layer(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)
        eta = torch.rand(1, layer.out_channels, layer.num_bases, dtype=torch.float64)
        torch.testing.assert_close(layer(x, eta), reference_forward(layer, x, eta), rtol=1e-10, atol=1e-10)


def test_batch_one_inference_with_output_bias_in_float32() -> None:
    torch.manual_seed(1)
    for kernel, groups in ((1, 1), (3, 1), (3, 8)):
        layer = DynamicConv2d(8, 8, kernel, padding=kernel // 2, groups=groups, bias=True).eval()
        layer.output_bias = nn.Parameter(torch.randn(8))
        x = torch.randn(1, 8, 9, 9)
        expected = layer(x)  # autograd on: the general path
        with torch.inference_mode():
            torch.testing.assert_close(layer(x), expected)
            torch.testing.assert_close(layer(x.to(memory_format=torch.channels_last)), expected)


def test_channels_last_module_conversion() -> None:
    """``Module.to(memory_format=channels_last)`` leaves the 5-D bases as they are."""
    torch.manual_seed(2)
    model = nn.Sequential(DynamicConv2d(4, 8, 3, padding=1), nn.ReLU(), DynamicConv2d(8, 8, 1, bias=True)).eval()
    x = torch.randn(2, 4, 7, 7)
    expected = model(x)
    bases = model[0].weight.detach().clone()
    model.to(memory_format=torch.channels_last)
    assert torch.equal(model[0].weight, bases), "same shape and values, only the layout changes"
    assert model[0].weight.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    x_cl = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x_cl), expected)
    with torch.inference_mode():
        torch.testing.assert_close(model(x_cl[:1]), expected[:1])
        torch.testing.assert_close(model(x[:1]), expected[:1])
    model.double()
    assert model[0].weight.dtype == torch.float64 and isinstance(model[0].weight, nn.Parameter)


@pytest.mark.parametrize("config", CONFIGS[:12], ids=[f"cfg{i}" for i in range(12)])
def test_gradients_equal_across_strategies(config: dict) -> None:
    torch.manual_seed(1)
    layer = DynamicConv2d(**config).double()
    x = torch.randn(2, config["in_channels"], 9, 10, dtype=torch.float64)
    grads = {}
    for strategy in EXACT_STRATEGIES:
        layer.strategy = strategy
        layer.zero_grad(set_to_none=True)
        inp = x.clone().requires_grad_(True)
        out = layer(inp)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads[strategy] = [inp.grad] + [p.grad for p in layer.parameters()]
    for strategy in ("grouped", "matmul"):
        for got, want in zip(grads[strategy], grads["feature"]):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_gradcheck_through_predictor() -> None:
    torch.manual_seed(2)
    layer = DynamicConv2d(4, 6, 3, padding=1, groups=2, bias=True, num_bases=3).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    for strategy in EXACT_STRATEGIES:
        layer.strategy = strategy
        assert torch.autograd.gradcheck(layer, (x,))


def test_auto_strategy_matches_in_train_and_eval() -> None:
    torch.manual_seed(3)
    layer = DynamicConv2d(8, 16, 3, padding=1, num_bases=4).double()
    for batch in (1, 4):
        x = torch.randn(batch, 8, 12, 12, dtype=torch.float64)
        expected = reference_forward(layer, x, layer.coefficients(x))
        for training in (True, False):
            layer.train(training)
            torch.testing.assert_close(layer(x), expected)


def test_coefficient_shapes_per_mode() -> None:
    x = torch.randn(5, 8, 6, 6)
    for mode in COEFFICIENT_MODES:
        layer = DynamicConv2d(8, 12, 3, num_bases=3, mode=mode)
        eta = layer.coefficients(x)
        assert eta.shape == (5, 12, 3)
        assert layer.fused_weight(eta).shape == (5, 12, 8, 3, 3)
        if mode != "dynet":  # one value per base, shared by every output channel
            assert torch.equal(eta, eta[:, :1].expand_as(eta))
        if mode == "dyconv":
            torch.testing.assert_close(eta.sum(-1), torch.ones(5, 12))


def test_dyconv_temperature_is_a_buffer_that_sharpens() -> None:
    torch.manual_seed(4)
    layer = DynamicConv2d(8, 4, 1, num_bases=4, mode="dyconv", temperature=30.0)
    assert "predictor.temperature" in dict(layer.named_buffers())
    x = torch.randn(3, 8, 4, 4)
    hot = layer.coefficients(x)
    layer.predictor.set_temperature(0.05)
    cold = layer.coefficients(x)
    assert cold.amax(-1).mean() > hot.amax(-1).mean()


def test_external_coefficients_override_predictor() -> None:
    layer = DynamicConv2d(4, 6, 3, padding=1, num_bases=2).double()
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    eta = torch.rand(2, 6, 2, dtype=torch.float64)
    torch.testing.assert_close(layer(x, eta), reference_forward(layer, x, eta))


def test_block_predictor_serves_several_layers() -> None:
    torch.manual_seed(5)
    first = DynamicConv2d(8, 8, 1, num_bases=3, shared_predictor=True).double()
    second = DynamicConv2d(8, 8, 3, padding=1, groups=8, num_bases=3, shared_predictor=True).double()
    assert first.predictor is None
    predictor = CoefficientPredictor(8, [(8, 3), (8, 3)], reduction=4).double()
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    eta_first, eta_second = predictor(x)
    assert eta_first.shape == eta_second.shape == (2, 8, 3)
    y = second(first(x, eta_first), eta_second)
    expected = reference_forward(second, reference_forward(first, x, eta_first), eta_second)
    torch.testing.assert_close(y, expected)
    with pytest.raises(ValueError, match="shared_predictor"):
        first(x)


def test_channels_last_input() -> None:
    torch.manual_seed(6)
    layer = DynamicConv2d(6, 8, 3, padding=1, groups=2, bias=True).double()
    x = torch.randn(3, 6, 9, 9, dtype=torch.float64)
    expected = reference_forward(layer, x, layer.coefficients(x))
    x_cl = x.to(memory_format=torch.channels_last)
    for strategy in ("auto",) + EXACT_STRATEGIES:
        layer.strategy = strategy
        torch.testing.assert_close(layer(x_cl), expected)


def test_autocast_fuses_kernels_in_float32() -> None:
    torch.manual_seed(7)
    layer = DynamicConv2d(8, 8, 3, padding=1)
    x = torch.randn(2, 8, 10, 10)
    expected = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eta = layer.coefficients(x)
        assert eta.dtype == torch.float32
        assert layer.fused_weight(eta).dtype == torch.float32
        for strategy in EXACT_STRATEGIES:
            layer.strategy = strategy
            y = layer(x)
            torch.testing.assert_close(y.float(), expected, rtol=0.05, atol=0.05)


def test_training_at_batch_size_one() -> None:
    layer = DynamicConv2d(4, 4, 3, padding=1).train()
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    layer(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())


def test_every_parameter_gets_a_gradient() -> None:
    """DDP with find_unused_parameters=False needs every parameter in the graph."""
    layer = DynamicConv2d(4, 6, 3, padding=1, bias=True, reduction=2)
    for strategy in EXACT_STRATEGIES:
        layer.strategy = strategy
        layer.zero_grad(set_to_none=True)
        layer(torch.randn(2, 4, 6, 6)).sum().backward()
        assert [n for n, p in layer.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("mode", COEFFICIENT_MODES)
def test_from_conv_computes_the_static_convolution(mode: str) -> None:
    torch.manual_seed(8)
    conv = nn.Conv2d(6, 9, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=3, bias=True)
    layer = DynamicConv2d.from_conv(conv, num_bases=4, mode=mode)
    x = torch.randn(2, 6, 11, 12)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)
    bases = layer.weight
    assert not torch.allclose(bases[:, 0], bases[:, 1]), "noise must break the symmetry between bases"
    layer.train()
    layer(x).sum().backward()
    assert layer.predictor.output_layer.weight.grad.abs().sum() > 0


def test_from_conv_rejects_other_padding_modes() -> None:
    with pytest.raises(ValueError, match="padding_mode"):
        DynamicConv2d.from_conv(nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(in_channels=6, out_channels=4, kernel_size=3, groups=4), "groups"),
        (dict(in_channels=4, out_channels=4, kernel_size=3, num_bases=0), "num_bases"),
        (dict(in_channels=4, out_channels=4, kernel_size=3, mode="attention"), "mode"),
        (dict(in_channels=4, out_channels=4, kernel_size=3, reduction=8), "reduction"),
        (dict(in_channels=4, out_channels=4, kernel_size=3, reduction=0), "reduction"),
        (dict(in_channels=4, out_channels=4, kernel_size=0), "kernel_size"),
        (dict(in_channels=4, out_channels=4, kernel_size=3, stride=2, padding="same"), "same"),
        (dict(in_channels=4, out_channels=4, kernel_size=3, padding="full"), "padding"),
        (dict(in_channels=0, out_channels=4, kernel_size=3), "in_channels"),
        (dict(in_channels=4, out_channels=4, kernel_size=3, strategy="fast"), "strategy"),
        (dict(in_channels=4, out_channels=4, kernel_size=3, mode="dyconv", temperature=0.0), "temperature"),
        (dict(in_channels=4, out_channels=4, kernel_size=3, coefficient_slot=0), "coefficient_slot"),
        (
            dict(in_channels=4, out_channels=4, kernel_size=3, shared_predictor=True, coefficient_slot=-1),
            "coefficient_slot",
        ),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        DynamicConv2d(**kwargs)


def test_wrongly_shaped_coefficients_are_rejected() -> None:
    layer = DynamicConv2d(4, 6, 3, num_bases=2)
    x = torch.randn(2, 4, 5, 5)
    for bad in (torch.rand(2, 6, 3), torch.rand(2, 12), torch.rand(3, 6, 2)):
        with pytest.raises(ValueError, match="coefficients"):
            layer(x, bad)


def test_meta_device_runs_for_shape_inference() -> None:
    """Shapes of large inputs can be computed on the meta device, without memory or arithmetic."""
    layer = DynamicConv2d(8, 16, 3, stride=2, padding=1, bias=True).to("meta")
    y = layer(torch.empty(2, 8, 1024, 2048, device="meta"))
    assert y.shape == (2, 16, 512, 1024) and y.device.type == "meta"


def test_batch1_inference_runs_forward_hooks_of_the_predictor_layers():
    """The batch-1 fast path reads the predictor's weights directly; a hook on its layers (a MAC
    counter, a feature probe) must still see them called, with the same result."""
    layer = DynamicConv2d(8, 16, 3, padding=1, num_bases=3).eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.inference_mode():
        fast = layer(x)
    seen = []
    handle = layer.predictor.fc[0].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    with torch.inference_mode():
        hooked = layer(x)
    handle.remove()
    assert seen == [torch.Size([1, 2])]
    torch.testing.assert_close(hooked, fast)
