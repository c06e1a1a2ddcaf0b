"""dynsweep.models: torchvision parity, the paper's presets, small inputs, weights, spec, registry."""

from __future__ import annotations

import pytest
import torch
import torchvision
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dynsweep.cost import count
from dynsweep.models import (
    DynamicSpec,
    build_model,
    build_segmentation_model,
    default_spec,
    get_model_entry,
    list_models,
    load_torchvision_weights,
)
from dynsweep.nn import CoefficientPredictor, DynamicConv2d, fold_batchnorm

# PAPER.md's reference table: torchvision parameters and MMACs at 224 x 224.
PAPER_TABLE = {
    "resnet18": (11_689_512, 1814),
    "resnet50": (25_557_032, 4089),
    "mobilenet_v2": (3_504_872, 301),
    "mobilenet_v3_small": (2_542_856, 56.5),
    "mobilenet_v3_large": (5_483_032, 217),
    "shufflenet_v2_x1_0": (2_278_604, 145),
}
ARCHITECTURES = [*PAPER_TABLE, "shufflenet_v2_x0_5", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"]
# The paper's MACs ratios Dy / baseline (PAPER.md), +-0.03.
PAPER_RATIOS = {
    "dy_shufflenet_v2": ("shufflenet_v2_x1_0", 88 / 146),
    "dy_mobilenet_v2": ("mobilenet_v2", 129 / 298),
    "dy_resnet18": ("resnet18", 550 / 1730),
    "dy_resnet50": ("resnet50", 1075 / 3890),
}


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs(model: nn.Module, size: int = 224) -> int:
    return count(model, (3, size, size)).macs


def flop_counter_macs(model: nn.Module, size: int = 224) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() // 2


def torchvision_model(name: str) -> nn.Module:
    return getattr(torchvision.models, name)(weights=None)


# ---------------------------------------------------------------------------- 2. exact baselines
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_default_spec_is_torchvision_structure(name: str) -> None:
    ours, theirs = build_model(name), torchvision_model(name)
    assert params(ours) == params(theirs)
    if name in PAPER_TABLE:
        assert params(ours) == PAPER_TABLE[name][0]
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)  # same keys, same order: files load unchanged
    assert all(ours_state[k].shape == v.shape for k, v in theirs_state.items())
    assert not any(isinstance(m, (DynamicConv2d, CoefficientPredictor)) for m in ours.modules())


@pytest.mark.parametrize("name", list(PAPER_TABLE))
def test_default_spec_macs_match_flop_counter_on_torchvision(name: str) -> None:
    ours, reference = macs(build_model(name)), flop_counter_macs(torchvision_model(name))
    assert ours == pytest.approx(reference, rel=0.01)
    assert ours / 1e6 == pytest.approx(PAPER_TABLE[name][1], rel=0.01)


@pytest.mark.parametrize("name", list(PAPER_TABLE))
def test_torchvision_state_dict_file_loads_into_static_model(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    theirs = torchvision_model(name).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(theirs.state_dict(), path)
    ours = load_torchvision_weights(build_model(name), path).eval()
    ours.load_state_dict(torch.load(path, weights_only=True))  # the plain torch route works too
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "name, spec",
    [
        ("resnet18", {"stages": "all", "num_bases": 3}),
        ("resnet50", {"stages": [2, 3], "num_bases": 2, "predictor_scope": "layer"}),
        ("mobilenet_v2", {"stages": "all", "mode": "dyconv", "reduction": None}),
        ("mobilenet_v3_small", {"stages": "all", "mode": "condconv", "classifier": True, "stem": True}),
        ("mobilenet_v3_large", {"stages": [1, 4], "roles": ["pointwise"]}),
        ("shufflenet_v2_x1_0", {"stages": "all", "num_bases": 6, "reduction": None}),
    ],
)
def test_torchvision_file_initialises_dynamic_bases(name: str, spec: dict, tmp_path) -> None:
    """With the same channels, the converted dynamic model computes the static one (noise=0)."""
    torch.manual_seed(0)
    theirs = torchvision_model(name).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(theirs.state_dict(), path)
    model = build_model(name, spec)
    assert any(isinstance(m, DynamicConv2d) for m in model.modules())
    load_torchvision_weights(model, path, noise=0.0).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = theirs(x)
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    # With noise the bases differ, but the fused kernel at initialisation is still the static one.
    load_torchvision_weights(model, path, noise=0.05)
    layer = next(m for m in model.modules() if isinstance(m, DynamicConv2d))
    assert not torch.allclose(layer.weight[:, 0], layer.weight[:, -1])


def test_torchvision_file_rejected_when_spec_changes_channels() -> None:
    state = torchvision_model("resnet18").state_dict()
    with pytest.raises(
        ValueError, match=r"weights\['layer1\.0\.\w+\.weight'\] has shape \[64\] but the model expects \[32\]"
    ):
        load_torchvision_weights(build_model("dy_resnet18"), state)
    with pytest.raises(ValueError, match="keys the model lacks"):
        load_torchvision_weights(build_model("resnet18"), {**state, "extra.weight": torch.zeros(1)})
    del state["fc.bias"]
    with pytest.raises(ValueError, match="lacks keys the model needs: \\['fc.bias'\\]"):
        load_torchvision_weights(build_model("resnet18"), state)


# ---------------------------------------------------------------------------- 3. presets
@pytest.fixture(scope="module")
def baseline_macs() -> dict[str, int]:
    return {name: macs(build_model(name)) for name in PAPER_TABLE}


@pytest.mark.parametrize("preset", list(PAPER_RATIOS))
def test_preset_macs_ratio_matches_paper(preset: str, baseline_macs: dict[str, int]) -> None:
    baseline, paper = PAPER_RATIOS[preset]
    ratio = macs(build_model(preset)) / baseline_macs[baseline]
    assert abs(ratio - paper) <= 0.03, f"{preset}: {ratio:.3f} vs the paper's {paper:.3f}"


@pytest.mark.parametrize("size", ["small", "large"])
def test_dy_mobilenet_v3_costs_about_the_baseline(size: str, baseline_macs: dict[str, int]) -> None:
    ratio = macs(build_model(f"dy_mobilenet_v3_{size}")) / baseline_macs[f"mobilenet_v3_{size}"]
    assert 1.0 <= ratio <= 1.10


@pytest.mark.parametrize("preset", list(PAPER_RATIOS))
def test_fix_twin_has_dy_channels_and_no_predictor(preset: str) -> None:
    dy, fix = build_model(preset), build_model("fix_" + preset[3:])
    assert get_model_entry("fix_" + preset[3:]).baseline == get_model_entry(preset).baseline
    assert not any(isinstance(m, (DynamicConv2d, CoefficientPredictor)) for m in fix.modules())
    fix_shapes = {name: m.weight.shape for name, m in fix.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    for name, m in dy.named_modules():
        if isinstance(m, DynamicConv2d):
            assert fix_shapes[name] == (m.out_channels, m.in_channels // m.groups, *m.kernel_size)
    # The twin costs exactly the Dy network's convolutions, without predictor and fusion.
    dy_cost, fix_cost = count(dy, (3, 64, 64)), count(fix, (3, 64, 64))
    assert fix_cost.macs == dy_cost.by_kind["static"].macs + dy_cost.by_kind["dynamic_conv"].macs


def test_presets_follow_the_paper() -> None:
    mobile = build_model("dy_mobilenet_v2")
    block = mobile.features[3]  # a stride-1 block of stage 2 with a residual
    convs = [m for m in block.modules() if isinstance(m, DynamicConv2d)]
    assert [c.out_channels for c in convs] == [block.out_channels] * 3  # no expansion
    assert convs[1].groups == block.out_channels // 6
    assert all(c.num_bases == 6 and c.predictor is None for c in convs)
    assert block.predictor.in_channels == block.out_channels and block.predictor.reduction is None
    assert block.predictor.output_layer.bias.abs().sum() > 0  # torchvision's init leaves predictors alone

    shuffle = build_model("dy_shufflenet_v2")
    unit = shuffle.stage3[1]
    assert unit.left == 3 * unit.right
    assert unit.branch2[3].groups == unit.right // 2
    assert unit.predictor.in_channels == unit.right

    for name, halved in (("dy_resnet18", [32, 64, 128, 256]), ("dy_resnet50", [32, 64, 128, 256])):
        model = build_model(name)
        assert [getattr(model, f"layer{i}")[0].conv1.out_channels for i in range(1, 5)] == halved
        assert model.conv1.out_channels == 64 and type(model.conv1) is nn.Conv2d
        assert model.layer2[1].predictor.reduction == 4
    for name in list_models("dy_*"):
        assert len(get_model_entry(name).doc) > 20, f"{name} has no docstring"


# ---------------------------------------------------------------------------- forward / backward
def _forward_backward(name: str, size: int, small_input: bool) -> None:
    torch.manual_seed(0)
    model = build_model(name, small_input=small_input, num_classes=10)
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", [28, 64])
def test_small_input_forward_backward(name: str, size: int) -> None:
    _forward_backward(name, size, small_input=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_at_224(name: str) -> None:
    _forward_backward(name, 224, small_input=False)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x1_0"])
def test_small_input_keeps_output_stride_8(name: str) -> None:
    model = build_model(name, small_input=True, features_only=True).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape[-2:] == (4, 4)
    assert build_model(name, features_only=True)(torch.zeros(1, 3, 64, 64)).shape[-2:] == (2, 2)


@pytest.mark.parametrize("name", list_models(presets=False))
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_stage_walk_sets_the_feature_stride(name: str, output_stride: int) -> None:
    """One walk for every family: ``small_input`` takes the feature stride from 32 to 8, and
    ``output_stride`` bounds it, the strides it removes becoming dilation."""
    x = torch.zeros(1, 3, 64, 64)
    for small_input, total in ((False, 32), (True, 8)):
        model = build_model(name, small_input=small_input, output_stride=output_stride, features_only=True)
        with torch.no_grad():
            size = model.eval()(x).shape[-1]
        assert size == 64 // min(output_stride, total), (small_input, size)
        dilated = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.dilation != (1, 1)]
        assert bool(dilated) == (output_stride < total), small_input


def shared_layers_by_predictor(model: nn.Module) -> dict[CoefficientPredictor, list[DynamicConv2d]]:
    """Each block-level predictor and the dynamic layers of its block that it serves."""
    served = {}
    for block in model.modules():
        predictor = getattr(block, "predictor", None)
        if isinstance(predictor, CoefficientPredictor) and not isinstance(block, DynamicConv2d):
            layers = [m for m in block.modules() if isinstance(m, DynamicConv2d) and m.predictor is None]
            served[predictor] = layers
    return served


def test_every_block_uses_every_coefficient() -> None:
    """Each block's predictor emits exactly one tensor per shared layer, and each layer consumes
    the tensor of its slot, once."""
    for name in list_models("dy_*"):
        model = build_model(name).eval()
        served = shared_layers_by_predictor(model)
        produced: dict[CoefficientPredictor, list[torch.Tensor]] = {}
        consumed: list[tuple[DynamicConv2d, torch.Tensor]] = []
        for predictor in served:
            predictor.register_forward_hook(
                lambda module, args, out, produced=produced: produced.__setitem__(module, out)
            )
        for layers in served.values():
            for layer in layers:
                layer.register_forward_pre_hook(
                    lambda module, args, consumed=consumed: consumed.append((module, args[1]))
                )
        model(torch.randn(1, 3, 32, 32))
        assert served and set(produced) == set(served), name
        owner = {layer: predictor for predictor, layers in served.items() for layer in layers}
        assert len(consumed) == sum(len(out) for out in produced.values()), name
        for layer, coefficients in consumed:
            assert coefficients is produced[owner[layer]][layer.coefficient_slot], name


SLOT_SPECS = [
    {"stages": "all"},
    {"stages": "all", "roles": ["pointwise"], "mode": "condconv"},
    {"stages": [0, 2], "blocks": [0, -1], "roles": ["depthwise", "full"], "num_bases": 2},
]


@pytest.mark.parametrize("spec", [None, *SLOT_SPECS])
def test_slots_follow_the_predictor_output_order(spec: dict | None) -> None:
    """In every block, the slots of the shared layers number the predictor's outputs, and the
    output of each slot has the shape of the layer that reads it."""
    names = list_models("dy_*") if spec is None else list_models(presets=False)
    for name in names:
        model = build_model(name, spec)
        for predictor, layers in shared_layers_by_predictor(model).items():
            slots = sorted(layer.coefficient_slot for layer in layers)
            assert slots == list(range(len(predictor.layer_outputs))), name
            for layer in layers:
                shape = (layer.out_channels, layer.num_bases)
                assert predictor.layer_outputs[layer.coefficient_slot] == shape, name


def test_block_hands_each_layer_the_coefficients_of_its_slot() -> None:
    """Two layers of one shape in one block: swapping their slots changes the block's output, so a
    mis-order cannot pass unseen."""
    torch.manual_seed(0)
    block = build_model("dy_resnet18").layer1[1].eval()
    assert block.predictor.layer_outputs[0] == block.predictor.layer_outputs[1]
    x = torch.randn(2, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        first, second = block.predictor(x)
        hidden = block.relu(block.bn1(block.conv1(x, first)))
        reference = block.relu(block.bn2(block.conv2(hidden, second)) + x)
        torch.testing.assert_close(block(x), reference)
        block.conv1.coefficient_slot, block.conv2.coefficient_slot = 1, 0
        assert not torch.allclose(block(x), reference, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", ["dy_resnet18", "dy_mobilenet_v2", "dy_shufflenet_v2", "dy_mobilenet_v3_small"])
def test_batchnorm_folds_into_every_dynamic_conv(name: str) -> None:
    """Every dynamic conv is followed directly by its BatchNorm: fold_batchnorm removes them all."""
    torch.manual_seed(0)
    model = build_model(name).eval()
    for m in model.modules():  # non-trivial statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


def test_dynamic_model_exports() -> None:
    model = build_model("dy_shufflenet_v2").eval()
    x = torch.randn(1, 3, 64, 64)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


# ---------------------------------------------------------------------------- 1. spec
def test_spec_round_trips_through_dict_and_yaml() -> None:
    spec = DynamicSpec(
        stages=[0, 2],
        blocks=[0, -1],
        roles=["pointwise", "depthwise"],
        num_bases=[2, 3, 4, 5],
        reduction=[4, None, 8, 2],
        predictor_scope="layer",
        mode="dyconv",
        temperature=10.0,
        width_mult=0.75,
        stage_widths=[1.0, 0.5, 1.0, 2.0],
        dynamic_width=0.5,
        channel_multiple=4,
    )
    assert DynamicSpec.from_dict(spec.to_dict()) == spec
    assert DynamicSpec.from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict()))) == spec
    assert DynamicSpec(stages=(0, 1)).to_dict()["stages"] == [0, 1]
    assert DynamicSpec().is_static and DynamicSpec(stages="all", static_kernels=True).is_static
    for name in list_models():
        assert DynamicSpec.from_dict(default_spec(name).to_dict()) == default_spec(name)


def test_dict_spec_changes_preset_fields_and_spec_is_used_as_given() -> None:
    model = build_model("dy_resnet18", {"num_bases": 2, "mode": "condconv"})
    layers = [m for m in model.modules() if isinstance(m, DynamicConv2d)]
    assert {(m.num_bases, m.mode) for m in layers} == {(2, "condconv")}
    assert model.layer1[0].conv1.out_channels == 32  # the preset's halving stays
    assert params(build_model("dy_resnet18", DynamicSpec())) == params(build_model("resnet18"))
    assert params(build_model("shufflenet_v2")) == params(build_model("shufflenet_v2_x1_0"))


def test_placement_selects_stages_blocks_and_roles() -> None:
    model = build_model("resnet50", {"stages": [1], "blocks": [0], "roles": ["pointwise"]})
    dynamic = [name for name, m in model.named_modules() if isinstance(m, DynamicConv2d)]
    assert dynamic == ["layer2.0.conv1", "layer2.0.conv3", "layer2.0.downsample.0"]
    assert model.layer2[0].predictor.layer_outputs == [(128, 4), (512, 4), (512, 4)]
    model = build_model("mobilenet_v2", {"stages": [6], "roles": ["depthwise"], "predictor_scope": "layer"})
    (layer,) = [m for m in model.modules() if isinstance(m, DynamicConv2d)]
    assert layer.groups == layer.in_channels == 960 and layer.predictor is not None
    model = build_model("mobilenet_v3_small", {"stem": True, "classifier": True})
    dynamic = [name for name, m in model.named_modules() if isinstance(m, DynamicConv2d)]
    assert dynamic == ["features.0.0", "features.12.0", "classifier.0", "classifier.3"]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 1000)


def test_per_stage_values_and_widths() -> None:
    model = build_model(
        "resnet18",
        {
            "stages": "all",
            "num_bases": [1, 2, 3, 4],
            "reduction": [None, 2, 4, 8],
            "stage_widths": [1, 1, 0.5, 2],
        },
    )
    assert [model.get_submodule(f"layer{i}.0.conv1").num_bases for i in range(1, 5)] == [1, 2, 3, 4]
    assert model.layer1[0].predictor.reduction is None and model.layer4[0].predictor.reduction == 8
    assert [model.get_submodule(f"layer{i}.0.conv1").out_channels for i in range(1, 5)] == [
        64,
        128,
        128,
        1024,
    ]
    assert build_model("mobilenet_v2", {"width_mult": 0.5}).features[-1][0].out_channels == 1280
    assert params(build_model("mobilenet_v2", {"width_mult": 0.5})) == params(
        torchvision.models.mobilenet_v2(width_mult=0.5)
    )


@pytest.mark.parametrize(
    "name, spec, message",
    [
        (
            "resnet18",
            {"stages": [4]},
            r"DynamicSpec.stages: stage 4 does not exist; resnet18 has stages 0 to 3",
        ),
        ("shufflenet_v2_x1_0", {"stages": [0, 3]}, r"DynamicSpec.stages: stage 3 does not exist"),
        ("resnet18", {"width_mult": 0.005}, r"DynamicSpec.width_mult: leaves 0.32 channels in the stem"),
        ("mobilenet_v2", {"stage_widths": [1, 1, 1, 1, 1, 1, 0.001]}, r"DynamicSpec.stage_widths: leaves"),
        (
            "resnet50",
            {"stages": [0], "dynamic_width": 0.001},
            r"DynamicSpec.dynamic_width: leaves .* in stage 0",
        ),
        (
            "mobilenet_v2",
            {"depthwise_group_width": 5},
            r"DynamicSpec.depthwise_group_width: 5 does not divide",
        ),
        (
            "shufflenet_v2_x1_0",
            {"split_ratio": 0.25, "depthwise_group_width": 2},
            r"DynamicSpec.depthwise_group_width: 2 does not divide the 29 channels",
        ),
        ("shufflenet_v2_x1_0", {"split_ratio": 0.001}, r"DynamicSpec.split_ratio: 0.001 leaves 0 of 116"),
        (
            "resnet18",
            {"num_bases": [2, 3]},
            r"DynamicSpec.num_bases: has 2 values, but resnet18 has 4 stages",
        ),
        ("resnet18", {"reduction": [4, 4, 4]}, r"DynamicSpec.reduction: has 3 values"),
        ("mobilenet_v2", {"stage_widths": [1, 1]}, r"DynamicSpec.stage_widths: has 2 values"),
        (
            "mobilenet_v2",
            {"stages": [0], "blocks": [1]},
            r"DynamicSpec.blocks: block 1 does not exist in stage 0",
        ),
        (
            "resnet18",
            {"stages": "all", "reduction": 128},
            r"DynamicSpec.reduction: 128 leaves no hidden units",
        ),
        ("resnet18", {"expansion": 1.0}, r"DynamicSpec.expansion: does not apply to resnet18"),
        ("mobilenet_v2", {"split_ratio": 0.25}, r"DynamicSpec.split_ratio: does not apply to mobilenet_v2"),
        ("shufflenet_v2_x1_0", {"channel_multiple": 3}, r"DynamicSpec.channel_multiple: stage 0 gets 117"),
    ],
)
def test_impossible_spec_fails_at_build_naming_the_field(name: str, spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(name, spec)


@pytest.mark.parametrize(
    "values, field",
    [
        ({"stages": "some"}, "stages"),
        ({"stages": [0, 0]}, "stages"),
        ({"blocks": []}, "blocks"),
        ({"roles": ["pointwise", "dilated"]}, "roles"),
        ({"num_bases": 0}, "num_bases"),
        ({"num_bases": [2, 0]}, "num_bases"),
        ({"mode": "softmax"}, "mode"),
        ({"temperature": 0}, "temperature"),
        ({"reduction": 0}, "reduction"),
        ({"predictor_scope": "network"}, "predictor_scope"),
        ({"width_mult": -1}, "width_mult"),
        ({"stage_widths": [1, 0]}, "stage_widths"),
        ({"dynamic_width": 0}, "dynamic_width"),
        ({"channel_multiple": 0}, "channel_multiple"),
        ({"expansion": 0}, "expansion"),
        ({"split_ratio": 1.0}, "split_ratio"),
        ({"depthwise_group_width": 0}, "depthwise_group_width"),
        ({"stem": "yes"}, "stem"),
        ({"num_base": 4}, "num_base"),
    ],
)
def test_bad_field_values_name_the_field(values: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^DynamicSpec\.{field}: "):
        DynamicSpec.from_dict(values)


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet19'; known models: .*resnet18"):
        build_model("resnet19")
    assert {"resnet18", "dy_resnet50", "fix_mobilenet_v2", "dy_mobilenet_v3_large"} <= set(list_models())
    assert list_models("dy_*", presets=False) == []


# ---------------------------------------------------------------------------- 5. segmentation
def _count_shapes_only(build, input_size) -> int:
    """MACs of ``build()`` on fake tensors: shapes only, so 1024 x 2048 costs no compute."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        return count(build(), input_size).macs


def test_resnet50_fcn_is_torchvision_fcn() -> None:
    from torchvision.models.segmentation import fcn_resnet50

    theirs = fcn_resnet50(weights=None, weights_backbone=None, num_classes=19, aux_loss=False).eval()
    ours = build_segmentation_model("resnet50", num_classes=19)
    assert params(ours) == params(theirs)
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x)["out"])
    assert macs(ours, 32) == pytest.approx(flop_counter_macs(theirs, 32), rel=0.01)


SEGMENTATION_BACKBONES = [
    "resnet18",
    "dy_resnet18",
    "fix_resnet18",
    pytest.param("resnet50", marks=pytest.mark.slow),
    pytest.param("dy_resnet50", marks=pytest.mark.slow),
    "dy_mobilenet_v2",
]


@pytest.mark.parametrize("name", SEGMENTATION_BACKBONES)
def test_segmentation_output_shape_and_backward(name: str) -> None:
    model = build_segmentation_model(name, num_classes=5)
    assert model.backbone(torch.zeros(1, 3, 32, 48)).shape[-2:] == (4, 6)  # output stride 8
    out = model(torch.randn(2, 3, 32, 48))
    assert out.shape == (2, 5, 32, 48)
    out.mean().backward()


def test_dy_resnet50_fcn_macs_ratio_matches_paper() -> None:
    size = (3, 1024, 2048)
    dy = _count_shapes_only(lambda: build_segmentation_model("dy_resnet50"), size)
    base = _count_shapes_only(lambda: build_segmentation_model("resnet50"), size)
    assert abs(dy / base - 95.6 / 310.8) <= 0.03, f"{dy / base:.3f}"
    # Same head width in both: the Dy FCN differs from the static one in its backbone only.
    assert build_segmentation_model("dy_resnet50").classifier[0].out_channels == 512


def test_dy_and_fix_twins_start_with_kernels_of_the_same_scale() -> None:
    """The Dy-vs-Fix ablation compares kernels, not initialisations: fused kernels at the average
    coefficient have the spread of the Fix twin's static kernels (torchvision's fan_out scheme)."""
    torch.manual_seed(0)
    dy, fix = build_model("dy_resnet18"), build_model("fix_resnet18")
    dynamic = dy.layer3[1].conv1
    coefficients = torch.full((1, dynamic.out_channels, dynamic.num_bases), dynamic.initial_coefficient)
    fused_std = dynamic.fused_weight(coefficients).std().item()
    static_std = fix.layer3[1].conv1.weight.std().item()
    assert fused_std == pytest.approx(static_std, rel=0.05)


def test_weights_that_do_not_fit_leave_the_model_untouched() -> None:
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    del state["fc.bias"]
    model = build_model("resnet18", {"stages": [0]})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="fc.bias"):
        load_torchvision_weights(model, state)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
