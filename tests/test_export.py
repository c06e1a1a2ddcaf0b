"""Export of DynamicConv2d's inference path: torch.export and ONNX, static batch 1 and dynamic batch.

At batch 1 (static shapes) the operator fuses the kernels first and runs one ordinary convolution
per layer (the paper's inference form): under export ``choose_strategy`` picks "grouped" even where
eager CPU inference would pick "matmul". With a symbolic batch dimension the group count of the
batch-as-groups convolution cannot be expressed, so ``choose_strategy`` falls back to the feature
form, which exports with a static kernel ``num_bases`` times as wide.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

from dynsweep.nn import COEFFICIENT_MODES, CoefficientPredictor, DynamicConv2d

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # the dynamo-based ONNX exporter translates through it

NUM_BASES = 3
INPUT_SHAPE = (3, 16, 16)


class SharedBlock(nn.Module):
    """One block-level predictor serving a pointwise and a depthwise dynamic layer (the paper's CPM).

    In TinyDynamicNet the pointwise layer maps 8 to 8 channels on an 8 x 8 map, on purpose: on that
    shape onnxscript's reshape-MatMul-reshape rewrite silently breaks a pointwise "matmul" layer
    (see test_onnx_batch1_explicit_strategy), so the default export must not use that form.
    """

    def __init__(self, channels: int, mode: str) -> None:
        super().__init__()
        self.cpm = CoefficientPredictor(channels, [(channels, NUM_BASES)] * 2, mode, reduction=2)
        kwargs = dict(num_bases=NUM_BASES, mode=mode, shared_predictor=True)
        self.pw = DynamicConv2d(channels, channels, 1, **kwargs)
        self.dw = DynamicConv2d(channels, channels, 3, padding=1, groups=channels, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pw_coefficients, dw_coefficients = self.cpm(x)
        return self.dw(F.relu(self.pw(x, pw_coefficients)), dw_coefficients) + x


class TinyDynamicNet(nn.Module):
    """Stem (stride 2, bias, own single-layer predictor), a shared-CPM block, a grouped downsampler."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.stem = DynamicConv2d(
            3, 8, 3, stride=2, padding=1, bias=True, num_bases=NUM_BASES, mode=mode, reduction=None
        )
        self.block = SharedBlock(8, mode)
        self.down = DynamicConv2d(8, 12, 3, stride=2, padding=1, groups=2, bias=True, num_bases=NUM_BASES, mode=mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.block(F.relu(self.stem(x)))))


def dynamic_layers(model: nn.Module) -> list[DynamicConv2d]:
    return [m for m in model.modules() if isinstance(m, DynamicConv2d)]


def make_model(mode: str) -> TinyDynamicNet:
    torch.manual_seed(0)
    model = TinyDynamicNet(mode)
    for module in model.modules():
        if isinstance(module, CoefficientPredictor) and module.mode == "dyconv":
            module.set_temperature(1.0)  # the end of DY-CNN's annealing: clearly non-uniform weights
    return model.eval()


def batch_dim() -> Dim:
    return Dim("batch", min=1, max=64)


def inputs(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, *INPUT_SHAPE, generator=torch.Generator().manual_seed(seed))


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, dynamic: bool) -> Path:
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=["x"],
        output_names=["y"],
        dynamic_shapes=({0: batch_dim()},) if dynamic else None,
        verbose=False,
    )
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path))
    return path


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory: pytest.TempPathFactory):
    """``get(mode, dynamic) -> (model, onnx path)``, each exported once for the value and graph tests."""
    directory = tmp_path_factory.mktemp("onnx")
    cache: dict[tuple[str, bool], tuple[nn.Module, Path]] = {}

    def get(mode: str, dynamic: bool) -> tuple[nn.Module, Path]:
        if (mode, dynamic) not in cache:
            model = make_model(mode)
            example = inputs(2 if dynamic else 1, 0)
            path = directory / f"{mode}_{'dynamic' if dynamic else 'batch1'}.onnx"
            cache[mode, dynamic] = (model, export_onnx(model, example, path, dynamic))
        return cache[mode, dynamic]

    return get


@pytest.mark.parametrize("mode", COEFFICIENT_MODES)
def test_torch_export_batch1(mode: str) -> None:
    model = make_model(mode)
    x = inputs(1, 1)
    program = torch.export.export(model, (inputs(1, 0),))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.parametrize("mode", COEFFICIENT_MODES)
def test_torch_export_dynamic_batch(mode: str) -> None:
    model = make_model(mode)
    program = torch.export.export(model, (inputs(2, 0),), dynamic_shapes=({0: batch_dim()},))
    exported = program.module()
    with torch.no_grad():
        for batch in (1, 3):
            x = inputs(batch, batch)
            torch.testing.assert_close(exported(x), model(x))


@pytest.mark.parametrize("mode", COEFFICIENT_MODES)
def test_onnx_batch1(mode: str, onnx_export) -> None:
    model, path = onnx_export(mode, False)
    x = inputs(1, 1)
    with torch.no_grad():
        torch.testing.assert_close(run_onnx(path, x), model(x))


@pytest.mark.parametrize("mode", COEFFICIENT_MODES)
def test_onnx_dynamic_batch(mode: str, onnx_export) -> None:
    model, path = onnx_export(mode, True)
    graph_input = onnx.load(str(path)).graph.input[0]
    assert graph_input.type.tensor_type.shape.dim[0].dim_param, "batch dimension was not exported as symbolic"
    with torch.no_grad():
        for batch in (1, 3):
            x = inputs(batch, batch)
            torch.testing.assert_close(run_onnx(path, x), model(x))


@pytest.mark.parametrize(
    "strategy",
    [
        "feature",
        "grouped",
        # The matmul form is a 3-d bmm: onnxscript 0.7's two_reshapes_matmul_reshape_rule
        # mis-rewrote the earlier reshape -> 4-d MatMul -> reshape form when C == O == H.
        "matmul",
    ],
)
def test_onnx_batch1_explicit_strategy(strategy: str, tmp_path: Path) -> None:
    """A pointwise layer with in == out == H exports exactly at batch 1 with each forced strategy."""
    torch.manual_seed(0)
    layer = DynamicConv2d(8, 8, 1, bias=True, num_bases=NUM_BASES, strategy=strategy).eval()
    x = torch.randn(1, 8, 8, 5)
    path = export_onnx(layer, x, tmp_path / f"pointwise_{strategy}.onnx", False)
    with torch.no_grad():
        torch.testing.assert_close(run_onnx(path, x), layer(x))


def conv_nodes(path: Path) -> tuple[list, set[str], dict[str, list]]:
    """Conv nodes of an ONNX file, its initializer names, and inferred shapes by value name."""
    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    nodes = [n for n in model.graph.node if n.op_type == "Conv"]
    nodes += [n for f in model.functions for n in f.node if n.op_type == "Conv"]
    return nodes, {i.name for i in model.graph.initializer}, shapes


@pytest.mark.parametrize("mode", COEFFICIENT_MODES)
def test_onnx_batch1_fuses_kernels(mode: str, onnx_export) -> None:
    """Batch 1: exactly one Conv per dynamic layer, with a fused (computed) out_channels-wide kernel."""
    model, path = onnx_export(mode, False)
    layers = dynamic_layers(model)
    nodes, initializers, shapes = conv_nodes(path)
    assert len(nodes) == len(layers), [n.op_type for n in onnx.load(str(path)).graph.node]
    expected = sorted((m.out_channels, m.in_channels // m.groups, m.groups) for m in layers)
    found = []
    for node in nodes:
        weight = node.input[1]
        assert weight not in initializers, "batch-1 Conv uses a static kernel: the kernels were not fused"
        group = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        out_channels, in_per_group = shapes[weight][:2]
        found.append((out_channels, in_per_group, group))
    assert sorted(found) == expected


@pytest.mark.parametrize("mode", COEFFICIENT_MODES)
def test_onnx_dynamic_batch_uses_feature_form(mode: str, onnx_export) -> None:
    """Symbolic batch: one Conv per layer over all out_channels * num_bases static bases (Eq. 2)."""
    model, path = onnx_export(mode, True)
    layers = dynamic_layers(model)
    nodes, _, shapes = conv_nodes(path)
    assert len(nodes) == len(layers)
    expected = sorted((layer.out_channels * layer.num_bases, layer.groups) for layer in layers)
    found = []
    for node in nodes:
        group = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        found.append((shapes[node.input[1]][0], group))
    assert sorted(found) == expected
