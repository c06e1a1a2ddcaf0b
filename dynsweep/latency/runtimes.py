"""One inference call of a model in each runtime, ready to be timed.

Every runtime starts from the same inference form: eval mode, BatchNorm folded into the preceding
(dynamic) convolution, no autograd. ``eager`` calls it (at batch 1 the dynamic layers take their
batch-1 path); ``compile`` calls ``torch.compile`` of it; ``onnxruntime`` exports it
(:func:`dynsweep.nn.export.to_onnx`, the graph ``dynsweep export`` writes), gives its dynamic
convolutions ONNX Runtime's blocked kernels (:mod:`dynsweep.latency.onnx_layout`) and runs it on
the CPU execution provider; ``cuda_graph`` replays the eager form captured in a CUDA graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from dynsweep.latency.onnx_layout import block_dynamic_convolutions
from dynsweep.latency.settings import RUNTIMES
from dynsweep.nn import fold_batchnorm
from dynsweep.nn.export import import_extra, to_onnx

Runner = Callable[[], object]
ONNXRUNTIME_LEVELS = ("disable", "basic", "extended", "all")


def inference_form(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A copy of ``model`` in eval mode with BatchNorm folded, on ``device``."""
    return fold_batchnorm(model).to(device)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``threads`` (None: unchanged) inside the block."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def eager_runner(model: nn.Module, x: Tensor) -> Runner:
    """One forward of the inference form of ``model`` on ``x``, without autograd."""
    folded = inference_form(model, x.device)

    def run() -> Tensor:
        with torch.inference_mode():
            return folded(x)

    return run


def compile_runner(model: nn.Module, x: Tensor) -> Runner:
    """One forward of ``torch.compile`` of the inference form (compiled at the first call)."""
    compiled = torch.compile(inference_form(model, x.device), dynamic=False)

    def run() -> Tensor:
        with torch.inference_mode():
            return compiled(x)

    return run


def cuda_graph_runner(model: nn.Module, x: Tensor) -> Runner:
    """A replay of the inference form captured in a CUDA graph on a static copy of ``x``; returns
    the graph's static output (overwritten by the next replay)."""
    folded = inference_form(model, x.device)
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):  # warm up outside the capture (cuDNN handles, the allocator)
            folded(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        static_y = folded(static_x)

    def run() -> Tensor:
        graph.replay()
        return static_y

    return run


def onnxruntime_session(path: str | Path, threads: int | None, level: str = "all", spinning: bool = False):
    """An ONNX Runtime CPU session on ``path``: ``threads`` intra-op threads, one inter-op thread,
    graph optimisation ``level`` (one of ONNXRUNTIME_LEVELS), pool threads spinning between calls
    or not (ONNX Runtime's ``session.intra_op.allow_spinning``)."""
    ort = import_extra("onnxruntime")
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if level not in levels:
        raise ValueError(f"level must be one of {ONNXRUNTIME_LEVELS}, got {level!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[level]
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_graph(model: nn.Module, x: Tensor, work_dir: str | Path, name: str = "model", blocked: bool = True) -> Path:
    """The exported graph of ``model`` at ``x``'s shape in ``work_dir``; with ``blocked``, rewritten
    so that ONNX Runtime runs its dynamic convolutions blocked (for this host)."""
    work_dir = Path(work_dir)
    exported = work_dir / f"{name}.onnx"
    to_onnx(model, x.cpu(), exported)
    if not blocked:
        return exported
    target = work_dir / f"{name}.blocked.onnx"
    block_dynamic_convolutions(exported, target)
    return target


def onnxruntime_runner(
    model: nn.Module, x: Tensor, work_dir: str | Path, threads: int | None, name: str = "model", **session: object
) -> Runner:
    """One call of an ONNX Runtime session on the exported, blocked graph of ``model``."""
    import_extra("onnxruntime")
    if x.device.type != "cpu":
        raise ValueError(f"the onnxruntime runtime runs on the CPU, got an input on {x.device}")
    ort_session = onnxruntime_session(onnx_graph(model, x, work_dir, name), threads, **session)
    (input_name,) = [i.name for i in ort_session.get_inputs()]
    feed = {input_name: x.numpy()}
    return lambda: ort_session.run(None, feed)


def runner(
    model: nn.Module, x: Tensor, runtime: str, work_dir: str | Path, threads: int | None, name: str = "model"
) -> Runner:
    """One inference call of ``model`` on ``x`` in ``runtime`` (see the module docstring)."""
    if runtime == "eager":
        return eager_runner(model, x)
    if runtime == "compile":
        return compile_runner(model, x)
    if runtime == "onnxruntime":
        return onnxruntime_runner(model, x, work_dir, threads, name)
    if runtime == "cuda_graph":
        if x.device.type != "cuda":
            raise ValueError(f"the cuda_graph runtime needs a CUDA input, got one on {x.device}")
        return cuda_graph_runner(model, x)
    raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
