"""One inference call of a model in each runtime, ready to be timed.

Every runtime starts from the same inference form: eval mode, BatchNorm folded into the preceding
(dynamic) convolution, no autograd. ``eager`` calls it (at batch 1 its lean batch-1 path,
:func:`dynsweep.nn.inference.batch1_form`); ``compile`` calls ``torch.compile`` of the folded
model; ``onnxruntime`` exports it
(:func:`dynsweep.nn.export.to_onnx`, the graph ``dynsweep export`` writes), gives its dynamic
convolutions ONNX Runtime's blocked kernels (:mod:`dynsweep.latency.onnx_layout`) and runs it on
the CPU execution provider; ``cuda_graph`` replays the eager form captured in a CUDA graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from dynsweep.latency.onnx_layout import block_dynamic_convolutions
from dynsweep.latency.settings import RUNTIMES
from dynsweep.nn import fold_batchnorm
from dynsweep.nn.export import import_extra, to_onnx
from dynsweep.nn.inference import batch1_form

Runner = Callable[[], object]
ONNXRUNTIME_LEVELS = ("disable", "basic", "extended", "all")


def inference_form(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A copy of ``model`` in eval mode with BatchNorm folded and the lean batch-1 path
    (:func:`dynsweep.nn.inference.batch1_form`), on ``device``."""
    return batch1_form(model).to(device)


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
    """One forward of ``torch.compile`` of the folded model (compiled at the first call). Each
    model is its own traced module, so compiling one does not count against another's recompiles."""
    compiled = torch.compile(fold_batchnorm(model).to(x.device), dynamic=False)

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


def structure_key(model: nn.Module) -> str:
    """A digest of what a network computes with, not of its values: its modules with their
    settings (``repr``) and every parameter's and buffer's name, shape and dtype."""
    tensors = [(name, tuple(t.shape), str(t.dtype)) for name, t in (*model.named_parameters(), *model.named_buffers())]
    return hashlib.sha256(f"{model!r}\n{tensors!r}".encode()).hexdigest()[:20]


def onnx_graph(
    model: nn.Module,
    x: Tensor,
    work_dir: str | Path,
    name: str = "model",
    blocked: bool = True,
    graph_cache: str | Path | None = None,
) -> Path:
    """The exported graph of ``model`` at ``x``'s shape in ``work_dir``; with ``blocked``, rewritten
    so that ONNX Runtime runs its dynamic convolutions blocked (for this host).

    With a ``graph_cache`` folder the graph is kept there under the network's structure, the
    shape, the host and the versions, and reused: a sweep exports its reference network once.
    Only the timing uses the graph, so a network with the same structure may stand for another.
    """
    work_dir = Path(work_dir)
    cached = None
    if graph_cache is not None:
        import onnxruntime

        fields = [
            structure_key(model),
            list(x.shape),
            blocked,
            socket.gethostname(),
            torch.__version__,
            onnxruntime.__version__,
        ]
        cached = Path(graph_cache) / f"{hashlib.sha256(repr(fields).encode()).hexdigest()[:24]}.onnx"
        if cached.exists():
            return cached
    exported = work_dir / f"{name}.onnx"
    to_onnx(model, x.cpu(), exported)
    target = exported
    if blocked:
        target = work_dir / f"{name}.blocked.onnx"
        block_dynamic_convolutions(exported, target)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        shutil.copyfile(target, temporary)
        temporary.replace(cached)
        return cached
    return target


def onnxruntime_runner(
    model: nn.Module,
    x: Tensor,
    work_dir: str | Path,
    threads: int | None,
    name: str = "model",
    graph_cache: str | Path | None = None,
) -> Runner:
    """One call of an ONNX Runtime session on the exported, blocked graph of ``model``."""
    import_extra("onnxruntime")
    if x.device.type != "cpu":
        raise ValueError(f"the onnxruntime runtime runs on the CPU, got an input on {x.device}")
    ort_session = onnxruntime_session(onnx_graph(model, x, work_dir, name, graph_cache=graph_cache), threads)
    (input_name,) = [i.name for i in ort_session.get_inputs()]
    feed = {input_name: x.numpy()}
    return lambda: ort_session.run(None, feed)


def runner(
    model: nn.Module,
    x: Tensor,
    runtime: str,
    work_dir: str | Path,
    threads: int | None,
    name: str = "model",
    graph_cache: str | Path | None = None,
) -> Runner:
    """One inference call of ``model`` on ``x`` in ``runtime`` (see the module docstring);
    ``graph_cache``: see :func:`onnx_graph`."""
    if runtime == "eager":
        return eager_runner(model, x)
    if runtime == "compile":
        return compile_runner(model, x)
    if runtime == "onnxruntime":
        return onnxruntime_runner(model, x, work_dir, threads, name, graph_cache)
    if runtime == "cuda_graph":
        if x.device.type != "cuda":
            raise ValueError(f"the cuda_graph runtime needs a CUDA input, got one on {x.device}")
        return cuda_graph_runner(model, x)
    raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
