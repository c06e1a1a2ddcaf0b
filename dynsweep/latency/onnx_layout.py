"""ONNX Runtime's blocked convolution for computed kernels: a rewrite of an exported graph for this CPU.

ONNX Runtime's CPU optimiser (level ``ORT_ENABLE_ALL``) runs every convolution whose kernel is a
constant in a blocked layout (NCHWc: ``com.microsoft.nchwc`` operators, channels in blocks of 8
or 16 innermost, kernels reordered once at load, ReLU and residual sums fused). A dynamic layer's
kernel is computed in the graph, so the optimiser leaves its Conv on the unblocked path, and the
tensors around it in NCHW. :func:`block_dynamic_convolutions` gives those Convs the blocked kernel:

1. each dynamic layer's kernel (``Conv(x, Reshape(MatMul(coefficients, bases)))``, the form
   :func:`dynsweep.nn.export.to_onnx` writes at a static batch of 1) is replaced by a constant
   stub whose values are its flat indices, its first element a marker naming the layer, and the
   coefficients and the kernel become extra graph outputs so the fusion survives;
2. ONNX Runtime optimises that graph and saves it; where a stub came back reordered, its values
   say where every kernel element went. The rewrite checks that this is the blocked layout
   ``[O / B, R, B]`` (``B`` output channels innermost, ``R`` kernel elements per channel, input
   channels padded to the block), stores the bases in that order (``[O, K, R]``) and computes the
   kernel as ``MatMul -> Reshape -> Transpose -> Reshape``: one read of the bases, as before.

The result holds ONNX Runtime's own operators and this CPU's block size, like a model saved from
ONNX Runtime's optimiser: it is for this host and this ONNX Runtime, made where it runs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynsweep.nn.export import import_extra

# Stub values are exact float32 integers: flat index + 1 below 2**22, markers at -(2**22 + layer).
_MARKER = 2**22
_BLOCK_SIZES = (4, 8, 16, 32, 64)


class LayoutError(RuntimeError):
    """ONNX Runtime changed a dynamic layer's kernel in a way the rewrite does not know."""


@dataclass(frozen=True)
class BlockedLayout:
    """What :func:`block_dynamic_convolutions` did: dynamic layers found, and those now blocked."""

    dynamic_layers: int
    blocked_layers: int


@dataclass
class _DynamicConv:
    conv: object  # the Conv NodeProto
    kernel: str  # the computed kernel's value name
    coefficients: str  # [O, 1, K]
    bases: np.ndarray  # [O, K, C]


def _value_shapes(model) -> dict[str, list[int]]:
    onnx = import_extra("onnx")
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _dynamic_convs(model) -> list[_DynamicConv]:
    """Convs whose kernel is ``Reshape(MatMul(coefficients [O, 1, K], bases [O, K, C]))``."""
    numpy_helper = import_extra("onnx").numpy_helper
    initializers = {init.name: init for init in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    shapes = _value_shapes(model)

    def through_reshapes(name: str) -> str:
        while name in producer and producer[name].op_type in ("Reshape", "Identity"):
            name = producer[name].input[0]
        return name

    found = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] in initializers:
            continue
        matmul = producer.get(through_reshapes(node.input[1]))
        if matmul is None or matmul.op_type != "MatMul":
            continue
        bases_name = through_reshapes(matmul.input[1])
        kernel_shape, coefficient_shape = shapes.get(node.input[1]), shapes.get(matmul.input[0])
        if bases_name not in initializers or not kernel_shape or not coefficient_shape or -1 in kernel_shape:
            continue
        out, columns = kernel_shape[0], int(np.prod(kernel_shape[1:]))
        bases = numpy_helper.to_array(initializers[bases_name])
        if (
            bases.dtype != np.float32
            or bases.ndim < 2
            or bases.shape[0] != out
            or bases.size != out * bases.shape[1] * columns
            or coefficient_shape != [out, 1, bases.shape[1]]
            or out * columns >= _MARKER
        ):
            continue
        found.append(_DynamicConv(node, node.input[1], matmul.input[0], bases.reshape(out, -1, columns)))
    return found


def _stub(layer: int, size: int) -> np.ndarray:
    values = np.arange(1, size + 1, dtype=np.float32)
    values[0] = -(_MARKER + layer)
    return values


def _marked_layer(values: np.ndarray, layers: int) -> int | None:
    first = values.reshape(-1)[0] if values.size else 0.0
    layer = int(-first) - _MARKER
    return layer if first == -(_MARKER + layer) and 0 <= layer < layers else None


def _blocked_columns(reordered: np.ndarray, layer: int, out: int, columns: int) -> tuple[int, np.ndarray]:
    """``(B, column of each of the R kernel positions, -1 for padding)`` such that ``reordered`` is
    the stub laid out as ``[O_padded / B, R, B]``; a LayoutError if no block size explains it."""
    flat = reordered.reshape(-1)
    stub = _stub(layer, out * columns).reshape(out, columns)
    source = flat.astype(np.int64) - 1
    source[0] = 0  # the marker sits where element 0 went
    for block in _BLOCK_SIZES:
        padded = -(-out // block) * block
        if flat.size % padded:
            continue
        positions = flat.size // padded
        first_channel = source.reshape(padded // block, positions, block)[0, :, 0]
        column = np.where(flat.reshape(padded // block, positions, block)[0, :, 0] == 0, -1, first_channel)
        if np.any(column >= columns):
            continue
        rebuilt = np.zeros((padded, positions), np.float32)
        rebuilt[:out, column >= 0] = stub[:, column[column >= 0]]
        rebuilt = rebuilt.reshape(padded // block, block, positions).transpose(0, 2, 1)
        if np.array_equal(rebuilt.reshape(-1), flat):
            return block, column
    raise LayoutError(f"a blocked kernel of shape {list(reordered.shape)} has a layout the rewrite does not know")


def block_dynamic_convolutions(source: str | Path, target: str | Path) -> BlockedLayout:
    """Write to ``target`` the graph ``source`` with its dynamic convolutions on ONNX Runtime's
    blocked path (see the module docstring); the same function, for this host only.

    ``target`` loads with every optimisation level. A graph without dynamic layers comes back as
    ONNX Runtime's optimised graph.
    """
    onnx = import_extra("onnx")
    ort = import_extra("onnxruntime")
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    layers = _dynamic_convs(model)
    shapes = _value_shapes(model)
    original_outputs = len(model.graph.output)
    for index, layer in enumerate(layers):
        kernel_shape = shapes[layer.kernel]
        stub = _stub(index, int(np.prod(kernel_shape))).reshape(kernel_shape)
        model.graph.initializer.append(numpy_helper.from_array(stub, f"dynsweep_stub_{index}"))
        for name in (layer.kernel, layer.coefficients):
            model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shapes[name]))
        layer.conv.input[1] = f"dynsweep_stub_{index}"

    with tempfile.TemporaryDirectory(prefix="dynsweep-onnx-layout-") as work:
        stubbed, optimised_path = Path(work, "stubbed.onnx"), Path(work, "optimised.onnx")
        onnx.save(model, str(stubbed))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(optimised_path)
        options.log_severity_level = 3  # its warning says what the module docstring says
        ort.InferenceSession(str(stubbed), options, providers=["CPUExecutionProvider"])
        optimised = onnx.load(str(optimised_path))

    kernels = {f"dynsweep_stub_{index}": layer.kernel for index, layer in enumerate(layers)}
    del optimised.graph.output[original_outputs:]
    initializers = {init.name: init for init in optimised.graph.initializer}
    added: list = []
    inserted: dict[int, list] = {}
    blocked = 0
    for position, node in enumerate(optimised.graph.node):
        for slot, name in enumerate(node.input):
            if name in kernels:  # a Conv ONNX Runtime did not block: its kernel is computed again
                node.input[slot] = kernels[name]
        if node.domain != "com.microsoft.nchwc" or node.op_type != "Conv" or node.input[1] not in initializers:
            continue
        reordered = numpy_helper.to_array(initializers[node.input[1]])
        index = _marked_layer(reordered, len(layers))
        if index is None:
            continue
        layer = layers[index]
        out, num_bases, columns = layer.bases.shape
        block, column = _blocked_columns(reordered, index, out, columns)
        padded = -(-out // block) * block
        positions = reordered.size // padded
        bases = np.zeros((padded, num_bases, positions), np.float32)
        bases[:out, :, column >= 0] = layer.bases[:, :, column[column >= 0]]
        prefix = f"dynsweep_blocked_{index}"
        constants = {
            f"{prefix}_bases": bases,
            f"{prefix}_grouped": np.array([padded // block, block, positions], np.int64),
            f"{prefix}_shape": np.array(reordered.shape, np.int64),
        }
        nodes = []
        coefficients = layer.coefficients
        if padded > out:
            constants[f"{prefix}_pads"] = np.array([0, 0, 0, padded - out, 0, 0], np.int64)
            nodes.append(helper.make_node("Pad", [coefficients, f"{prefix}_pads"], [f"{prefix}_coefficients"]))
            coefficients = f"{prefix}_coefficients"
        nodes += [
            helper.make_node("MatMul", [coefficients, f"{prefix}_bases"], [f"{prefix}_fused"]),
            helper.make_node("Reshape", [f"{prefix}_fused", f"{prefix}_grouped"], [f"{prefix}_grouped_out"]),
            helper.make_node("Transpose", [f"{prefix}_grouped_out"], [f"{prefix}_channels_inner"], perm=[0, 2, 1]),
            helper.make_node("Reshape", [f"{prefix}_channels_inner", f"{prefix}_shape"], [f"{prefix}_kernel"]),
        ]
        for number, new in enumerate(nodes):
            new.name = f"{prefix}_{number}"
        added += [numpy_helper.from_array(value, name) for name, value in constants.items()]
        inserted[position] = nodes
        node.input[1] = f"{prefix}_kernel"
        blocked += 1

    nodes = [new for position, node in enumerate(optimised.graph.node) for new in (*inserted.get(position, []), node)]
    all_initializers = [*optimised.graph.initializer, *added]
    nodes, used = _live_nodes_in_order(nodes, optimised.graph, {init.name for init in all_initializers})
    live = [init for init in all_initializers if init.name in used]
    for init in live:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        if _marked_layer(numpy_helper.to_array(init), len(layers)) is not None:
            raise LayoutError(f"ONNX Runtime made {init.name!r} of a dynamic layer's kernel; the rewrite does not know it")
    del optimised.graph.node[:]
    optimised.graph.node.extend(nodes)
    del optimised.graph.initializer[:]
    optimised.graph.initializer.extend(live)
    onnx.save(optimised, str(target))
    return BlockedLayout(dynamic_layers=len(layers), blocked_layers=blocked)


def _live_nodes_in_order(nodes: list, graph, constants: set[str]) -> tuple[list, set[str]]:
    """``nodes`` in an order that computes each input first, without those no output needs; and
    every value name the kept nodes read or the graph returns."""
    available = {value.name for value in graph.input} | constants | {""}
    ordered, pending = [], nodes
    while pending:
        waiting = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise LayoutError(f"the rewritten graph has a cycle or a missing input at {waiting[0].name!r}")
        pending = waiting
    used = {value.name for value in graph.output}
    kept = []
    for node in reversed(ordered):
        if any(name in used for name in node.output):
            kept.append(node)
            used.update(name for name in node.input if name)
    return kept[::-1], used
