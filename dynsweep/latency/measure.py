"""Measured inference latency of a model, with the spread, the settings and where it was measured.

On a shared machine an absolute time drifts with the load; a ratio of two models timed in
alternation in one process does not drift as much. :func:`measure` therefore times the model
interleaved with a ``reference`` (for a sweep: the architecture's static network at its base
widths, the same for every trial) and reports both the absolute median and the round-by-round
ratio, each with its quartiles and the number of runs.
"""

from __future__ import annotations

import platform
import socket
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from dynsweep.latency.runtimes import runner, torch_threads
from dynsweep.latency.settings import LatencySettings
from dynsweep.latency.timing import Spread, cuda_clock, interleaved, paired_ratios, wall_clock

MODEL, REFERENCE = "model", "reference"


@cache
def host_name() -> str:
    return socket.gethostname()


def device_name(device: str) -> str:
    """The CPU's model name or the CUDA device's name."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    with_name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            with_name = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    return with_name or platform.processor() or platform.machine()


def runtime_versions(runtime: str) -> dict[str, str]:
    versions: dict[str, str] = {"torch": torch.__version__}
    if runtime == "onnxruntime":
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    return versions


def input_shape(input_size: Sequence[int], settings: LatencySettings) -> tuple[int, int, int, int]:
    """``[batch, C, H, W]``: ``input_size`` is ``(C, H, W)``; the settings' size replaces H and W."""
    if len(input_size) != 3 or not all(isinstance(v, int) and v >= 1 for v in input_size):
        raise ValueError(f"input_size must be (channels, height, width), positive integers, got {input_size!r}")
    channels, height, width = input_size
    if settings.input_size is not None:
        height, width = cast("tuple[int, int]", settings.input_size)  # a pair once the settings are made
    return settings.batch_size, channels, height, width


def example_input(shape: Sequence[int], device: str) -> torch.Tensor:
    """The same seeded input for every model and runtime of one measurement."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(*shape, generator=generator).to(device)


def time_models(
    models: Mapping[str, nn.Module],
    input_size: Sequence[int],
    settings: LatencySettings,
    extra: Mapping[str, Callable[[], object]] | None = None,
    runtimes: Sequence[str] | None = None,
    graph_cache: str | Path | None = None,
) -> dict[tuple[str, str], list[float]]:
    """Seconds per round of each ``(name, runtime)``, all timed interleaved in this process.

    ``runtimes`` defaults to the settings' runtime; ``extra`` adds timed calls (key ``(name, "")``),
    e.g. a read of a model's bases. PyTorch runs with the settings' threads meanwhile.
    ``graph_cache``: a folder where exported graphs are kept and reused (``runtimes.onnx_graph``).
    """
    shape = input_shape(input_size, settings)
    x = example_input(shape, settings.device)
    clock = cuda_clock if settings.device == "cuda" else wall_clock
    with torch_threads(settings.threads), tempfile.TemporaryDirectory(prefix="dynsweep-latency-") as work_dir:
        calls: dict[tuple[str, str], Callable[[], object]] = {}
        for runtime in runtimes or [settings.runtime]:
            for name, model in models.items():
                calls[name, runtime] = runner(model, x, runtime, work_dir, settings.threads, name, graph_cache)
        for name, call in (extra or {}).items():
            calls[name, ""] = call
        return interleaved(calls, settings.repeats, settings.warmup, clock)


@dataclass(frozen=True)
class LatencyReport:
    """A model's latency (milliseconds) and, when timed against a reference, the reference's and
    the ratio model / reference, each as median and quartiles of ``runs`` interleaved rounds."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    runs: int
    reference_median_ms: float | None
    reference_q1_ms: float | None
    reference_q3_ms: float | None
    ratio: float | None
    ratio_q1: float | None
    ratio_q3: float | None
    host: str
    device: str
    device_name: str
    runtime: str
    threads: int
    batch_size: int
    input_size: list[int]
    repeats: int
    versions: dict[str, str]

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LatencyReport:
        return cls(**values)


def report_of(samples: Mapping[str, Sequence[float]], settings: LatencySettings, shape: Sequence[int]) -> LatencyReport:
    """The report of ``samples[MODEL]`` (and ``samples[REFERENCE]`` if timed), in seconds."""
    latency = Spread.of(samples[MODEL], 1e3)
    reference = Spread.of(samples[REFERENCE], 1e3) if REFERENCE in samples else None
    ratio = Spread.of(paired_ratios(samples[MODEL], samples[REFERENCE])) if reference else None
    return LatencyReport(
        median_ms=latency.median,
        q1_ms=latency.q1,
        q3_ms=latency.q3,
        runs=latency.runs,
        reference_median_ms=reference.median if reference else None,
        reference_q1_ms=reference.q1 if reference else None,
        reference_q3_ms=reference.q3 if reference else None,
        ratio=ratio.median if ratio else None,
        ratio_q1=ratio.q1 if ratio else None,
        ratio_q3=ratio.q3 if ratio else None,
        host=host_name(),
        device=settings.device,
        device_name=device_name(settings.device),
        runtime=settings.runtime,
        threads=settings.threads if settings.threads is not None else torch.get_num_threads(),
        batch_size=settings.batch_size,
        input_size=list(shape[1:]),
        repeats=settings.repeats,
        versions=runtime_versions(settings.runtime),
    )


def measure_with(
    model: nn.Module,
    input_size: Sequence[int],
    settings: LatencySettings,
    reference: nn.Module | None = None,
    graph_cache: str | Path | None = None,
) -> LatencyReport:
    """:func:`measure` with its settings as one :class:`LatencySettings`; ``graph_cache`` keeps
    exported graphs for reuse (see :func:`time_models`)."""
    models = {MODEL: model} if reference is None else {MODEL: model, REFERENCE: reference}
    timed = time_models(models, input_size, settings, graph_cache=graph_cache)
    samples = {name: seconds for (name, _), seconds in timed.items()}
    return report_of(samples, settings, input_shape(input_size, settings))


def measure(
    model: nn.Module,
    input_size: Sequence[int],
    *,
    device: str = "cpu",
    runtime: str = "eager",
    batch_size: int = 1,
    threads: int | None = None,
    repeats: int = 30,
    warmup: int = 3,
    reference: nn.Module | None = None,
) -> LatencyReport:
    """Latency of ``model`` on a ``[batch_size, *input_size]`` input (``input_size`` is
    ``(C, H, W)``) in ``runtime`` on ``device``, timed ``repeats`` times after ``warmup`` calls;
    with a ``reference``, timed interleaved with it, and the report has the ratio."""
    settings = LatencySettings(
        device=device, runtime=runtime, batch_size=batch_size, threads=threads, repeats=repeats, warmup=warmup
    )
    return measure_with(model, input_size, settings, reference)
