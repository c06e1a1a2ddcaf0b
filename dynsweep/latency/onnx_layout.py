"""ONNX Runtime's blocked convolution for computed kernels: a rewrite of an exported graph for this CPU.

ONNX Runtime's CPU optimiser (level ``ORT_ENABLE_ALL``) runs every convolution whose kernel is a
constant in a blocked layout (NCHWc: ``com.microsoft.nchwc`` operators, channels in blocks of 8
or 16 innermost, kernels reordered once at load, ReLU and residual sums fused). A dynamic layer's
kernel is computed in the graph, so the optimiser leaves its Conv on the unblocked path and the
tensors around it in NCHW. :func:`block_dynamic_convolutions` gives those Convs the blocked kernel:

1. each dynamic layer's kernel (``Conv(x, Reshape(MatMul(coefficients, bases)))``, the form
   :func:`dynsweep.nn.export.to_onnx` writes at a static batch of 1) is replaced by a constant
   stub whose values are its flat indices, its first element a marker naming the layer;
2. ONNX Runtime optimises that graph and saves it; where a stub came back reordered, its values
   say where every kernel element went. The rewrite checks that this is the blocked layout
   ``[O / B, R, B]`` (``B`` output channels innermost, ``R`` kernel elements per channel, input
   channels padded to the block) and computes the kernel in it;
3. the fusion itself runs blocked: ONNX Runtime's blocked depthwise Conv, with the bases of
   ``B`` output channels as its input map (``K`` rows of ``R`` kernel elements, stored blocked)
   and their coefficients as its ``K x 1`` kernel, writes the fused kernel in the blocked layout
   in one read of the bases. A Conv ONNX Runtime left unblocked (grouped convolutions whose
   groups are not whole blocks) gets the same fusion and one ReorderOutput to the plain kernel;
4. the block predictor's last Gemm gets its rows permuted (and padded with zero rows to whole
   blocks) so that it emits the coefficients in the blocked depthwise kernel's order, and the
   predictors' global average pooling becomes GlobalAveragePool, which ONNX Runtime runs on
   the blocked tensor instead of reordering it back first. (``pointwise_predictors=True`` also
   runs the layers after a global pooling as blocked 1 x 1 Convs instead of matrix-vector
   products; measured slower on CPU, so off.)

``fusion="matmul"`` keeps the portable graph's MatMul fusion and moves each block's channels
innermost with a Transpose (for comparison; slower). The result holds ONNX Runtime's own
operators and this CPU's block size, like a model saved from ONNX Runtime's optimiser: it is for
this host and this ONNX Runtime, made where it runs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from dynsweep.errors import DynsweepError
from dynsweep.nn.export import import_extra

if TYPE_CHECKING:
    from onnx import NodeProto

NCHWC_DOMAIN = "com.microsoft.nchwc"
FUSIONS = ("depthwise", "matmul")
# Stub values are exact float32 integers: flat index + 1 below 2**22, markers at -(2**22 + layer).
_MARKER = 2**22
_BLOCK_SIZES = (4, 8, 16, 32, 64)


class LayoutError(DynsweepError, RuntimeError):
    """ONNX Runtime changed a dynamic layer's kernel in a way the rewrite does not know."""


@dataclass(frozen=True)
class BlockedLayout:
    """What :func:`block_dynamic_convolutions` did: dynamic layers found, those whose Conv runs
    blocked, those whose coefficients come from a reordered predictor, and the block size."""

    dynamic_layers: int
    blocked_layers: int
    reordered_predictors: int
    block: int | None


@dataclass
class _DynamicConv:
    conv: NodeProto  # the Conv node
    kernel: str  # the computed kernel's value name
    coefficients: str  # [O, 1, K]; after _reorder_predictors, the predictor's [1, O_padded * K] output
    bases: np.ndarray  # [O, K, C]
    kernel_dims: list[int]  # [O, I / groups, kH, kW]
    blocked_coefficients: bool = False


def _value_shapes(model) -> dict[str, list[int]]:
    onnx = import_extra("onnx")
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _producers(model) -> dict[str, NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def _consumers(model) -> dict[str, list[NodeProto]]:
    users: dict[str, list[NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _dynamic_convs(model) -> list[_DynamicConv]:
    """Convs whose kernel is ``Reshape(MatMul(coefficients [O, 1, K], bases [O, K, C]))``."""
    numpy_helper = import_extra("onnx").numpy_helper
    initializers = {init.name: init for init in model.graph.initializer}
    producer = _producers(model)
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
        found.append(_DynamicConv(node, node.input[1], matmul.input[0], bases.reshape(out, -1, columns), kernel_shape))
    return found


def _pool_globally(model) -> int:
    """Replace every ReduceMean over the two spatial axes of a 4-D tensor by GlobalAveragePool
    (then Flatten where the mean dropped those axes); returns how many."""
    onnx = import_extra("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    shapes = _value_shapes(model)
    initializers = {init.name: init for init in model.graph.initializer}
    replaced, nodes = 0, []
    for node in model.graph.node:
        nodes.append(node)
        if node.op_type != "ReduceMean" or len(shapes.get(node.input[0], [])) != 4:
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if len(node.input) > 1 and node.input[1] in initializers:
            axes = numpy_helper.to_array(initializers[node.input[1]]).tolist()
        else:
            axes = attributes.get("axes")
        if axes is None or sorted(a % 4 for a in axes) != [2, 3]:
            continue
        pooled = f"{node.output[0]}_global_pool"
        if attributes.get("keepdims", 1):
            nodes[-1] = helper.make_node("GlobalAveragePool", [node.input[0]], [node.output[0]], name=pooled)
        else:
            nodes[-1:] = [
                helper.make_node("GlobalAveragePool", [node.input[0]], [pooled], name=pooled),
                helper.make_node("Flatten", [pooled], [node.output[0]], name=f"{pooled}_flat", axis=1),
            ]
        replaced += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return replaced


def _pooled_gemms_as_convs(model) -> int:
    """Run the layers after a global pooling (``GlobalAveragePool -> Flatten -> Gemm [-> Relu ->
    Gemm] [-> Sigmoid]``: the predictors and the classifier) on the pooled ``[N, C, 1, 1]`` tensor,
    each Gemm as a 1 x 1 Conv, and flatten after them: ONNX Runtime then runs them blocked, on
    the blocked pooled tensor, instead of as matrix-vector products. Only where ``C`` is a
    multiple of 4 (else ONNX Runtime leaves the Conv unblocked, slower than the Gemm). Edits the
    nodes in place (their order is restored later); returns how many Gemms."""
    onnx = import_extra("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    producer, consumers, shapes = _producers(model), _consumers(model), _value_shapes(model)
    initializers = {init.name: init for init in model.graph.initializer}
    converted = 0
    for flatten in list(model.graph.node):
        source = producer.get(flatten.input[0]) if flatten.input else None
        axis = {a.name: helper.get_attribute_value(a) for a in flatten.attribute}.get("axis", 1)
        if flatten.op_type != "Flatten" or axis != 1 or source is None or source.op_type != "GlobalAveragePool":
            continue
        channels = (shapes.get(flatten.input[0]) or [0, 0])[1]
        if channels <= 0 or channels % 4:  # ONNX Runtime blocks (reorders) only multiples of 4 channels
            continue
        flat, pooled, chain = flatten.output[0], flatten.input[0], 0
        while len(users := consumers.get(flat, [])) == 1:
            node = users[0]
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Gemm" and (
                attributes.get("transB") == 1
                and attributes.get("transA", 0) == 0
                and attributes.get("alpha", 1.0) == 1.0
                and attributes.get("beta", 1.0) == 1.0
                and len(node.input) == 3
                and all(name in initializers for name in node.input[1:])
            ):
                weight = numpy_helper.to_array(initializers[node.input[1]])
                kernel = f"{node.input[1]}_pointwise"
                if kernel not in initializers:
                    initializers[kernel] = numpy_helper.from_array(weight[:, :, None, None], kernel)
                    model.graph.initializer.append(initializers[kernel])
                node.op_type = "Conv"
                del node.attribute[:]
                node.input[0], node.input[1] = pooled, kernel
                converted += 1
            elif node.op_type in ("Relu", "Sigmoid"):
                node.input[0] = pooled
            else:
                break
            flat = node.output[0]
            node.output[0] = pooled = f"{flat}_pointwise"
            chain += 1
        if chain:
            flatten.input[0], flatten.output[0] = pooled, flat
    return converted


def _blocked_rows(out: int, num_bases: int, block: int) -> np.ndarray:
    """Row ``o * K + k`` of a layer's coefficients for each row of the blocked depthwise kernel
    ``[O_padded / B, K, B]`` (-1 for a padding channel)."""
    padded = -(-out // block) * block
    channel = np.arange(padded // block)[:, None, None] * block + np.arange(block)[None, None, :]
    rows = channel * num_bases + np.arange(num_bases)[None, :, None]
    return np.where(channel < out, rows, -1).reshape(-1)


def _reorder_predictors(model, layers: list[_DynamicConv], block: int) -> int:
    """Permute (and pad) the rows of each block predictor's last ``Gemm`` so that it emits its
    layers' coefficients in the blocked depthwise kernel's order. Only where the predictor is
    ``Gemm -> Sigmoid [-> Split] -> Reshape`` for dynamic layers found here and nothing else;
    returns how many predictors."""
    onnx = import_extra("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    producer, consumers = _producers(model), _consumers(model)
    initializers = {init.name: init for init in model.graph.initializer}
    # gemm output -> (gemm, split, chunk -> layer)
    groups: dict[str, tuple[NodeProto, NodeProto | None, dict[str, _DynamicConv]]] = {}
    for layer in layers:
        reshape = producer.get(layer.coefficients)
        if reshape is None or reshape.op_type != "Reshape" or len(consumers.get(layer.coefficients, [])) != 1:
            continue
        chunk = reshape.input[0]
        source = producer.get(chunk)
        split = source if source is not None and source.op_type == "Split" else None
        sigmoid = producer.get(split.input[0]) if split is not None else source
        if sigmoid is None or sigmoid.op_type != "Sigmoid" or len(consumers.get(chunk, [])) != 1:
            continue
        gemm = producer.get(sigmoid.input[0])
        if gemm is None or gemm.op_type != "Gemm" or len(consumers.get(sigmoid.output[0], [])) != 1:
            continue
        groups.setdefault(gemm.output[0], (gemm, split, {}))[2][chunk] = layer
    reordered = 0
    for gemm, split, chunks in groups.values():
        attributes = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
        outputs = list(split.output) if split is not None else [producer[gemm.output[0]].output[0]]
        if (
            attributes.get("transB") != 1
            or attributes.get("transA", 0) != 0
            or attributes.get("alpha", 1.0) != 1.0
            or attributes.get("beta", 1.0) != 1.0
            or len(gemm.input) != 3
            or not all(name in initializers for name in gemm.input[1:])
            or set(outputs) != set(chunks)
            or (split is not None and (len(split.input) < 2 or split.input[1] not in initializers))
        ):
            continue
        rows, sizes, offset = [], [], 0
        for chunk in outputs:
            out, num_bases, _ = chunks[chunk].bases.shape
            blocked = _blocked_rows(out, num_bases, block)
            rows.append(np.where(blocked >= 0, blocked + offset, -1))
            sizes.append(len(blocked))
            offset += out * num_bases
        weight, bias = (numpy_helper.to_array(initializers[name]) for name in gemm.input[1:])
        if weight.shape[0] != offset or (
            split is not None and numpy_helper.to_array(initializers[split.input[1]]).sum() != offset
        ):
            continue
        order = np.concatenate(rows)
        new_weight = np.where(order[:, None] >= 0, weight[np.maximum(order, 0)], 0).astype(weight.dtype)
        new_bias = np.where(order >= 0, bias[np.maximum(order, 0)], 0).astype(bias.dtype)
        prefix = f"{gemm.output[0]}_blocked_rows"
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(new_weight, f"{prefix}_weight"),
                numpy_helper.from_array(new_bias, f"{prefix}_bias"),
            ]
        )
        gemm.input[1], gemm.input[2] = f"{prefix}_weight", f"{prefix}_bias"
        if split is not None:
            model.graph.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), f"{prefix}_split"))
            split.input[1] = f"{prefix}_split"
        for chunk, layer in chunks.items():
            layer.coefficients, layer.blocked_coefficients = chunk, True
        reordered += 1
    if reordered:  # the exporter's recorded shapes of the reordered values no longer hold
        del model.graph.value_info[:]
    return reordered


def _stub(layer: int, size: int) -> np.ndarray:
    values = np.arange(1, size + 1, dtype=np.float32)
    values[0] = -(_MARKER + layer)
    return values


def _marked_layer(values: np.ndarray, layers: int) -> int | None:
    first = values.reshape(-1)[0] if values.size else 0.0
    layer = int(-first) - _MARKER
    return layer if first == -(_MARKER + layer) and 0 <= layer < layers else None


def _blocked_columns(
    reordered: np.ndarray, layer: int, out: int, columns: int, blocks: Sequence[int] = _BLOCK_SIZES
) -> tuple[int, np.ndarray]:
    """``(B, column of each of the R kernel positions, -1 for padding)`` such that ``reordered`` is
    the stub laid out as ``[O_padded / B, R, B]`` for a block size ``B`` of ``blocks``; a
    LayoutError if none explains it."""
    flat = reordered.reshape(-1)
    stub = _stub(layer, out * columns).reshape(out, columns)
    source = flat.astype(np.int64) - 1
    source[0] = 0  # the marker sits where element 0 went
    for block in blocks:
        padded = -(-out // block) * block
        if flat.size % padded:
            continue
        positions = flat.size // padded
        first_channel = source.reshape(padded // block, positions, block)[0, :, 0]
        column = np.where(flat.reshape(padded // block, positions, block)[0, :, 0] == 0, -1, first_channel)
        if np.any(column >= columns):
            continue
        rebuilt: np.ndarray = np.zeros((padded, positions), np.float32)
        rebuilt[:out, column >= 0] = stub[:, column[column >= 0]]
        rebuilt = rebuilt.reshape(padded // block, block, positions).transpose(0, 2, 1)
        if np.array_equal(rebuilt.reshape(-1), flat):
            return block, column
    raise LayoutError(f"a blocked kernel of shape {list(reordered.shape)} has a layout the rewrite does not know")


def _optimised_by_onnxruntime(model):
    """``model`` as ONNX Runtime's CPU optimiser (level ``all``) leaves it."""
    onnx = import_extra("onnx")
    ort = import_extra("onnxruntime")
    with tempfile.TemporaryDirectory(prefix="dynsweep-onnx-layout-") as work:
        source, target = Path(work, "source.onnx"), Path(work, "optimised.onnx")
        onnx.save(model, str(source))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(target)
        options.log_severity_level = 3  # its warning says what the module docstring says
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        return onnx.load(str(target))


@cache
def channel_block() -> int | None:
    """The channel block of ONNX Runtime's blocked convolution on this CPU (None: it has none),
    read off the kernel it reorders for a 32-channel 3 x 3 Conv."""
    onnx = import_extra("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    stub = _stub(0, 32 * 32 * 9).reshape(32, 32, 3, 3)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "probe",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 32, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 32, 8, 8])],
        [numpy_helper.from_array(stub, "w")],
    )
    optimised = _optimised_by_onnxruntime(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    initializers = {init.name: init for init in optimised.graph.initializer}
    for node in optimised.graph.node:
        if node.domain == NCHWC_DOMAIN and node.op_type == "Conv" and node.input[1] in initializers:
            return _blocked_columns(numpy_helper.to_array(initializers[node.input[1]]), 0, 32, 32 * 9)[0]
    return None


class _Emitter:
    """Collects the nodes and constants that compute the rewritten kernels."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(import_extra("onnx").numpy_helper.from_array(value, name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str, domain: str = "", **attributes: object) -> str:
        helper = import_extra("onnx").helper
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, domain=domain, **attributes))
        return output

    def blocked_coefficients(self, prefix: str, layer: _DynamicConv, block: int) -> str:
        """The coefficients as the blocked depthwise kernel ``[O_padded, 1, K, 1]`` (memory
        ``[O_padded / B, K, B]``): a Reshape of a reordered predictor's output, else Pad (to whole
        blocks), Reshape, Transpose and Reshape of the ``[O, 1, K]`` coefficients."""
        out, num_bases, _ = layer.bases.shape
        padded = -(-out // block) * block
        shape = self.constant(f"{prefix}_kernel_shape", np.array([padded, 1, num_bases, 1], np.int64))
        coefficients = layer.coefficients
        if layer.blocked_coefficients:
            return self.node("Reshape", [coefficients, shape], f"{prefix}_coefficient_kernel")
        if padded > out:
            pads = self.constant(f"{prefix}_pads", np.array([0, 0, 0, padded - out, 0, 0], np.int64))
            coefficients = self.node("Pad", [coefficients, pads], f"{prefix}_coefficients")
        grouped = self.constant(f"{prefix}_grouped", np.array([padded // block, block, num_bases], np.int64))
        kernel = self.node("Reshape", [coefficients, grouped], f"{prefix}_coefficients_grouped")
        kernel = self.node("Transpose", [kernel], f"{prefix}_coefficients_blocked", perm=[0, 2, 1])
        return self.node("Reshape", [kernel, shape], f"{prefix}_coefficient_kernel")

    def kernel(
        self,
        prefix: str,
        layer: _DynamicConv,
        block: int,
        column: np.ndarray,
        blocked_dims: Sequence[int] | None,
        fusion: str,
    ) -> str:
        """The name of ``layer``'s kernel computed in the graph: in the blocked layout ``[O_padded /
        B, R, B]`` of ``column`` (R kernel positions, -1 for padding) reshaped to ``blocked_dims``;
        or, with ``blocked_dims`` None, the plain kernel of an unblocked Conv."""
        out, num_bases, _ = layer.bases.shape
        padded = -(-out // block) * block
        positions = len(column)
        bases = np.zeros((padded, num_bases, positions), np.float32)
        bases[:out, :, column >= 0] = layer.bases[:, :, column[column >= 0]]
        if fusion == "matmul":
            coefficients = layer.coefficients
            if padded > out:
                pads = self.constant(f"{prefix}_pads", np.array([0, 0, 0, padded - out, 0, 0], np.int64))
                coefficients = self.node("Pad", [coefficients, pads], f"{prefix}_coefficients")
            fused = self.node("MatMul", [coefficients, self.constant(f"{prefix}_bases", bases)], f"{prefix}_fused")
            grouped = self.constant(f"{prefix}_grouped", np.array([padded // block, block, positions], np.int64))
            fused = self.node("Reshape", [fused, grouped], f"{prefix}_grouped_out")
            fused = self.node("Transpose", [fused], f"{prefix}_blocked", perm=[0, 2, 1])
        else:
            # The input map [1, O_padded, K, R], stored in NCHWc order [O_padded / B, K, R, B].
            bases = bases.reshape(padded // block, block, num_bases, positions).transpose(0, 2, 3, 1)
            bases = np.ascontiguousarray(bases).reshape(1, padded, num_bases, positions)
            fused = self.node(
                "Conv",
                [self.constant(f"{prefix}_bases", bases), self.blocked_coefficients(prefix, layer, block)],
                f"{prefix}_blocked",
                domain=NCHWC_DOMAIN,
                group=padded,
                kernel_shape=[num_bases, 1],
            )
            if blocked_dims is None:
                fused = self.node("ReorderOutput", [fused], f"{prefix}_plain", domain=NCHWC_DOMAIN, channels=out)
        dims = blocked_dims if blocked_dims is not None else layer.kernel_dims
        return self.node(
            "Reshape", [fused, self.constant(f"{prefix}_shape", np.array(dims, np.int64))], f"{prefix}_kernel"
        )


def block_dynamic_convolutions(
    source: str | Path,
    target: str | Path,
    fusion: str = "depthwise",
    reorder_predictors: bool = True,
    global_pooling: bool = True,
    pointwise_predictors: bool = False,
) -> BlockedLayout:
    """Write to ``target`` the graph ``source`` with its dynamic convolutions on ONNX Runtime's
    blocked path (see the module docstring); the same function, for this host only.

    ``target`` loads with every optimisation level. A graph without dynamic layers, or a CPU
    without blocked convolutions, gives ONNX Runtime's optimised graph. ``reorder_predictors``,
    ``global_pooling`` and ``pointwise_predictors`` (step 4, with the depthwise fusion only) switch
    the parts of step 4, to measure what each gives.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    onnx = import_extra("onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper

    model = onnx.load(str(source))
    block = channel_block()
    blocked_fusion = block is not None and fusion == "depthwise"
    if blocked_fusion and global_pooling:
        _pool_globally(model)
    layers = _dynamic_convs(model)  # after any change to the node list: it holds nodes of the graph
    # blocked_fusion: block is set.
    reordered = _reorder_predictors(model, layers, cast(int, block)) if blocked_fusion and reorder_predictors else 0
    if blocked_fusion and global_pooling and pointwise_predictors:
        _pooled_gemms_as_convs(model)
    original_outputs = len(model.graph.output)
    kept = []  # values the rewrite reads after ONNX Runtime's pass
    for index, layer in enumerate(layers):
        stub = _stub(index, int(np.prod(layer.kernel_dims))).reshape(layer.kernel_dims)
        model.graph.initializer.append(numpy_helper.from_array(stub, f"dynsweep_stub_{index}"))
        kept += [layer.coefficients] if layer.blocked_coefficients else [layer.coefficients, layer.kernel]
        layer.conv.input[1] = f"dynsweep_stub_{index}"
    for name in dict.fromkeys(kept):
        model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    nodes, _ = _live_nodes_in_order(list(model.graph.node), model.graph, {i.name for i in model.graph.initializer})
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    optimised = _optimised_by_onnxruntime(model)

    del optimised.graph.output[original_outputs:]
    initializers = {init.name: init for init in optimised.graph.initializer}
    emitter = _Emitter()
    stubs = {f"dynsweep_stub_{index}": index for index in range(len(layers))}
    blocked: dict[int, tuple[NodeProto, np.ndarray]] = {}  # layer -> (its blocked Conv, columns)
    unblocked: dict[int, list[tuple[NodeProto, int]]] = {}  # layer -> [(node, input slot)] reading its stub
    for node in optimised.graph.node:
        for slot, name in enumerate(node.input):
            if name in stubs:
                unblocked.setdefault(stubs[name], []).append((node, slot))
        if node.domain == NCHWC_DOMAIN and node.op_type == "Conv" and node.input[1] in initializers:
            # A blocked Conv: ONNX Runtime blocks convolutions on this host, so block is set.
            reordered_kernel = numpy_helper.to_array(initializers[node.input[1]])
            marked = _marked_layer(reordered_kernel, len(layers))
            if marked is not None:
                out, _, columns = layers[marked].bases.shape
                blocked[marked] = (
                    node,
                    _blocked_columns(reordered_kernel, marked, out, columns, [cast(int, block)])[1],
                )
    for index, layer in enumerate(layers):
        prefix = f"dynsweep_layer_{index}"
        if index in blocked:
            conv, column = blocked[index]
            dims = initializers[conv.input[1]].dims
            conv.input[1] = emitter.kernel(prefix, layer, cast(int, block), column, dims, fusion)
        if index in unblocked:
            if block is not None and fusion == "depthwise":
                kernel = emitter.kernel(prefix, layer, block, np.arange(layer.bases.shape[2]), None, fusion)
            else:  # the computed kernel of the portable graph
                kernel = layer.kernel
            for node, slot in unblocked[index]:
                node.input[slot] = kernel

    all_initializers = [*optimised.graph.initializer, *emitter.initializers]
    nodes, used = _live_nodes_in_order(
        [*optimised.graph.node, *emitter.nodes], optimised.graph, {init.name for init in all_initializers}
    )
    live = [init for init in all_initializers if init.name in used]
    for init in live:
        if (
            init.data_type == onnx.TensorProto.FLOAT
            and _marked_layer(numpy_helper.to_array(init), len(layers)) is not None
        ):
            raise LayoutError(
                f"ONNX Runtime made {init.name!r} of a dynamic layer's kernel; the rewrite does not know it"
            )
    del optimised.graph.node[:]
    optimised.graph.node.extend(nodes)
    del optimised.graph.initializer[:]
    optimised.graph.initializer.extend(live)
    onnx.save(optimised, str(target))
    return BlockedLayout(len(layers), len(blocked), reordered, block)


def _live_nodes_in_order(nodes: list, graph, constants: set[str]) -> tuple[list, set[str]]:
    """The ``nodes`` some graph output needs, in an order that computes each input first; and every
    value name they read or the graph returns."""
    producer = {out: node for node in nodes for out in node.output}
    used = {value.name for value in graph.output}
    pending, live = list(used), set()
    while pending:
        node = producer.get(pending.pop())
        if node is None or id(node) in live:
            continue
        live.add(id(node))
        for name in node.input:
            if name and name not in used:
                used.add(name)
                pending.append(name)
    available = {value.name for value in graph.input} | constants | {""}
    ordered, waiting = [], [node for node in nodes if id(node) in live]
    while waiting:
        still = []
        for node in waiting:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                still.append(node)
        if len(still) == len(waiting):
            raise LayoutError(f"the rewritten graph has a cycle or a missing input at {still[0].name!r}")
        waiting = still
    return ordered, used
