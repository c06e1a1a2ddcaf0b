"""dynsweep.cost.count: torchvision reference counts, closed forms of DynamicConv2d, FlopCounterMode."""

from __future__ import annotations

import random

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dynsweep.cost import KINDS, CostReport, count
from dynsweep.nn import COEFFICIENT_MODES, CoefficientPredictor, DynamicConv2d, dynamic_conv

# PAPER.md, "Reference counts of the torchvision models at 224 x 224": (parameters, MMACs).
TORCHVISION_REFERENCE = {
    "resnet18": (11_689_512, 1814),
    "resnet50": (25_557_032, 4089),
    "mobilenet_v2": (3_504_872, 301),
    "mobilenet_v3_small": (2_542_856, 56.5),
    "mobilenet_v3_large": (5_483_032, 217),
    "shufflenet_v2_x1_0": (2_278_604, 145),
}


def flop_counter_macs(fn) -> tuple[object, int]:
    """Run ``fn()`` under FlopCounterMode; return its result and the counted MACs (FLOPs / 2)."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return result, flops // 2


def check_totals(report: CostReport, model: nn.Module) -> None:
    assert set(report.by_kind) == set(KINDS)
    assert report.macs == sum(cost.macs for cost in report.by_kind.values())
    assert report.params == sum(cost.params for cost in report.by_kind.values())
    assert report.params == sum(p.numel() for p in model.parameters())
    assert report.macs == sum(row.macs for row in report.by_module)
    assert report.params == sum(row.params for row in report.by_module)


# --- (1) torchvision models against FlopCounterMode and the reference table ----------------------


@pytest.mark.parametrize("name", sorted(TORCHVISION_REFERENCE))
def test_torchvision_matches_flop_counter_and_reference(name: str) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    # count() runs one forward pass; FlopCounterMode counts the aten ops of that same pass.
    report, reference_macs = flop_counter_macs(lambda: count(model, (3, 224, 224)))
    expected_params, expected_mmacs = TORCHVISION_REFERENCE[name]

    assert report.macs == pytest.approx(reference_macs, rel=0.01)
    assert report.params == expected_params
    assert report.macs / 1e6 == pytest.approx(expected_mmacs, rel=0.01)
    check_totals(report, model)
    assert report.by_kind["static"].macs == report.macs
    assert report.by_kind["other"].params > 0  # BatchNorm
    for kind in ("predictor", "fusion", "dynamic_conv"):
        assert report.by_kind[kind] == (0, 0)


# --- (2) DynamicConv2d against its closed form ----------------------------------------------------


def random_config(rng: random.Random) -> dict:
    groups = rng.choice([1, 1, 2, 3])
    in_channels = groups * rng.randint(1, 5)
    out_channels = groups * rng.randint(1, 5)
    if rng.random() < 0.3:  # depthwise, possibly with a channel multiplier
        groups = in_channels
        out_channels = in_channels * rng.choice([1, 2])
    stride = (rng.choice([1, 2]), rng.choice([1, 2, 3]))
    padding: object = (rng.randint(0, 2), rng.randint(0, 2))
    if stride == (1, 1) and rng.random() < 0.4:
        padding = "same"
    reductions = [None] + [r for r in (1, 2, 4) if in_channels // r >= 1]
    return dict(
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=(rng.choice([1, 2, 3, 5]), rng.choice([1, 3, 4])),
        stride=stride,
        padding=padding,
        dilation=(rng.choice([1, 2]), rng.choice([1, 2])),
        groups=groups,
        bias=rng.random() < 0.5,
        num_bases=rng.randint(1, 6),
        mode=rng.choice(COEFFICIENT_MODES),
        reduction=rng.choice(reductions),
    )


CONFIGS = [random_config(random.Random(seed)) for seed in range(40)]


def closed_form(config: dict, size: tuple[int, int, int, int], training: bool) -> dict[str, int]:
    """MACs per kind of one DynamicConv2d call, written out from the paper (Eq. 1 and Eq. 2)."""
    batch, _, height, width = size
    c_in, c_out, groups = config["in_channels"], config["out_channels"], config["groups"]
    k = config["num_bases"]
    kh, kw = config["kernel_size"]
    if config["padding"] == "same":
        h_out, w_out = height, width
    else:
        (sh, sw), (ph, pw), (dh, dw) = config["stride"], config["padding"], config["dilation"]
        h_out = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        w_out = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    kernel = c_in // groups * kh * kw
    bias = c_out * k if config["bias"] else 0
    predicted = c_out * k if config["mode"] == "dynet" else k
    if config["reduction"] is None:
        predictor = c_in * predicted
    else:
        hidden = c_in // config["reduction"]
        predictor = c_in * hidden + hidden * predicted
    if training:
        conv = c_out * k * kernel * h_out * w_out
        fusion = c_out * k * h_out * w_out + bias
    else:
        conv = c_out * kernel * h_out * w_out
        fusion = c_out * k * kernel + bias
    return {"dynamic_conv": batch * conv, "fusion": batch * fusion, "predictor": batch * predictor}


def closed_form_params(config: dict) -> dict[str, int]:
    c_in, c_out, k = config["in_channels"], config["out_channels"], config["num_bases"]
    kh, kw = config["kernel_size"]
    conv = c_out * k * (c_in // config["groups"] * kh * kw + (1 if config["bias"] else 0))
    predicted = c_out * k if config["mode"] == "dynet" else k
    if config["reduction"] is None:
        predictor = (c_in + 1) * predicted
    else:
        hidden = c_in // config["reduction"]
        predictor = (c_in + 1) * hidden + (hidden + 1) * predicted
    return {"dynamic_conv": conv, "predictor": predictor}


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("config", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
def test_dynamic_conv_closed_form(config: dict, training: bool) -> None:
    layer = DynamicConv2d(**config)
    rng = random.Random(repr(config))
    size = (rng.choice([1, 1, 3]), config["in_channels"], rng.randint(9, 16), rng.randint(9, 16))
    input_size = size[1:] if size[0] == 1 and rng.random() < 0.5 else size
    report = count(layer, input_size, training=training)

    expected = closed_form(config, size, training)
    params = closed_form_params(config)
    assert report.by_kind["dynamic_conv"] == (expected["dynamic_conv"], params["dynamic_conv"])
    assert report.by_kind["fusion"] == (expected["fusion"], 0)
    assert report.by_kind["predictor"] == (expected["predictor"], params["predictor"])
    assert report.by_kind["static"] == (0, 0)
    assert report.by_kind["other"] == (0, 0)
    assert report.macs == sum(expected.values())
    check_totals(report, layer)
    assert [(row.name, row.kind, row.calls) for row in report.by_module] == [
        ("", "dynamic_conv", 1),
        ("", "fusion", 1),
        ("predictor", "predictor", 1),
    ]


def test_training_form_costs_num_bases_times_the_convolution() -> None:
    layer = DynamicConv2d(8, 16, 3, padding=1, num_bases=6)
    inference = count(layer, (8, 32, 32))
    training = count(layer, (8, 32, 32), training=True)
    assert training.by_kind["dynamic_conv"].macs == 6 * inference.by_kind["dynamic_conv"].macs
    assert training.by_kind["predictor"] == inference.by_kind["predictor"]
    # Kernel fusion does not depend on the resolution; feature fusion does.
    assert count(layer, (8, 64, 64)).by_kind["fusion"] == inference.by_kind["fusion"]
    larger = count(layer, (8, 64, 64), training=True)
    assert larger.by_kind["fusion"].macs == 4 * training.by_kind["fusion"].macs


# --- (3) a block-level predictor serving two layers ----------------------------------------------


class SharedPredictorBlock(nn.Module):
    """The paper's block: one CPM reads the block input and emits both layers' coefficients."""

    def __init__(self, channels: int = 12, num_bases: int = 6) -> None:
        super().__init__()
        self.cpm = CoefficientPredictor(channels, [(channels, num_bases), (channels, num_bases)], reduction=4)
        self.conv1 = DynamicConv2d(channels, channels, 1, num_bases=num_bases, shared_predictor=True)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = DynamicConv2d(
            channels, channels, 3, padding=1, groups=channels // 6, num_bases=num_bases, shared_predictor=True
        )
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = self.cpm(x)
        y = torch.relu(self.bn1(self.conv1(x, first)))
        return x + self.bn2(self.conv2(y, second))


def test_block_predictor_counted_once() -> None:
    block = SharedPredictorBlock(channels=12, num_bases=6)
    report = count(block, (12, 10, 10))
    predictor_rows = [row for row in report.by_module if row.kind == "predictor"]
    assert [(row.name, row.calls) for row in predictor_rows] == [("cpm", 1)]
    hidden = 12 // 4
    coefficients = 2 * 12 * 6  # both layers' (channel, base) pairs in one vector
    assert report.by_kind["predictor"] == (
        12 * hidden + hidden * coefficients,
        (12 + 1) * hidden + (hidden + 1) * coefficients,
    )
    conv1 = 12 * 12 * 100
    conv2 = 12 * (12 // 2) * 9 * 100
    assert report.by_kind["dynamic_conv"].macs == conv1 + conv2
    assert report.by_kind["fusion"].macs == 12 * 6 * 12 + 12 * 6 * 6 * 9
    assert report.by_kind["other"].params == 4 * 12  # two BatchNorms: weight and bias each
    assert report.by_kind["static"] == (0, 0)
    check_totals(report, block)


def test_module_called_twice_counts_each_call() -> None:
    block = SharedPredictorBlock(channels=12, num_bases=6)
    once = count(block, (12, 10, 10))
    twice_model = nn.Sequential(block, block, nn.Conv2d(12, 4, 1, bias=False))
    twice = count(twice_model, (12, 10, 10))
    for kind in ("predictor", "fusion", "dynamic_conv"):
        assert twice.by_kind[kind] == (2 * once.by_kind[kind].macs, once.by_kind[kind].params)
    assert twice.by_kind["static"] == (4 * 12 * 100, 4 * 12)
    assert {row.calls for row in twice.by_module if row.kind != "other" and row.type != "Conv2d"} == {2}
    check_totals(twice, twice_model)


# --- (4) FlopCounterMode on DynamicConv2d as a cross-check of the closed form -----------------------


# With num_bases == 1 torch.einsum lowers the fusion to an elementwise product, which
# FlopCounterMode does not count; the closed form counts it (out * in/g * kH * kW multiplications).
FLOP_COUNTER_CONFIGS = [config for config in CONFIGS if config["num_bases"] >= 2][:12]
assert len(FLOP_COUNTER_CONFIGS) == 12


@pytest.mark.parametrize("config", FLOP_COUNTER_CONFIGS, ids=[f"cfg{i}" for i in range(12)])
def test_dynamic_conv_agrees_with_flop_counter(config: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # FlopCounterMode sees the kernel fusion only as a matrix product: force that formulation.
    monkeypatch.setattr(dynamic_conv, "MATMUL_FUSION_MIN_SIZE", 0)
    layer = DynamicConv2d(**config, strategy="grouped").eval()  # the fused kernel at batch 1
    size = (config["in_channels"], 13, 11)
    report, reference = flop_counter_macs(lambda: count(layer, size))
    assert report.macs == pytest.approx(reference, rel=0.01)

    # The training form is what the "feature" strategy executes.
    layer.strategy = "feature"
    report, reference = flop_counter_macs(lambda: count(layer, size, training=True))
    assert report.macs == pytest.approx(reference, rel=0.01)


# --- the report and the forward pass ---------------------------------------------------------------


BAD_SIZES = [(3, 224), (0, 3, 8, 8), (3, 8.0, 8), "3x8x8", 3, (1, 1, 3, 8, 8), (True, 8, 8)]


@pytest.mark.parametrize("bad", BAD_SIZES)
def test_bad_input_size(bad: object) -> None:
    with pytest.raises(ValueError, match="input_size"):
        count(nn.Conv2d(3, 4, 3), bad)  # type: ignore[arg-type]


def test_batch_scales_macs_not_params() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.Flatten(), nn.LazyLinear(5))
    model(torch.zeros(1, 3, 9, 9))  # materialise the lazy layer
    one = count(model, (3, 9, 9))
    four = count(model, (4, 3, 9, 9))
    assert one.macs == 8 * 3 * 9 * 16 + 8 * 16 * 5
    assert four.macs == 4 * one.macs
    assert four.params == one.params == sum(p.numel() for p in model.parameters())
    assert one.input_size == (1, 3, 9, 9)


def test_restores_training_flags_and_follows_dtype() -> None:
    block = SharedPredictorBlock(channels=6, num_bases=2).double().train()
    block.bn1.eval()  # a frozen BatchNorm inside a training model must stay frozen
    running_mean = block.bn2.running_mean.clone()
    count(block, (6, 8, 8))
    assert block.training and block.conv1.training and block.bn2.training
    assert not block.bn1.training
    assert torch.equal(block.bn2.running_mean, running_mean)  # ran in eval mode


def test_tied_and_uncalled_parameters_counted_once() -> None:
    first = nn.Linear(6, 6)
    model = nn.Sequential(first, nn.ReLU(), nn.Linear(6, 6))
    model[2].weight = first.weight  # tied weights
    model.register_parameter("scale", nn.Parameter(torch.ones(3)))  # owned, never used in forward
    report = count(model, (1, 1, 6))  # the linear layers act on the last dimension
    check_totals(report, model)
    assert report.by_kind["other"] == (0, 3)
    assert report.by_kind["static"] == (2 * 6 * 6, 36 + 6 + 6)


def test_to_dataframe() -> None:
    block = SharedPredictorBlock(channels=12, num_bases=6)
    report = count(block, (12, 10, 10))
    frame = report.to_dataframe()
    assert list(frame.columns) == ["name", "type", "kind", "macs", "params", "calls"]
    assert len(frame) == len(report.by_module)
    assert int(frame["macs"].sum()) == report.macs
    assert int(frame["params"].sum()) == report.params
    assert frame.groupby("kind")["macs"].sum().to_dict() == {
        kind: cost.macs for kind, cost in report.by_kind.items() if kind in set(frame["kind"])
    }
