"""How a latency is measured: device, runtime, batch size, threads, input size and repeats (the
``latency:`` block of a sweep spec). Bad values raise one line naming the field and what it takes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from dynsweep.errors import DynsweepError

RUNTIMES_BY_DEVICE = {
    "cpu": ("eager", "compile", "onnxruntime"),
    "cuda": ("eager", "compile", "cuda_graph"),
}
RUNTIMES = ("eager", "compile", "onnxruntime", "cuda_graph")
DEVICES = tuple(RUNTIMES_BY_DEVICE)


class LatencySettingsError(DynsweepError, ValueError):
    """A field of the latency settings has a value it cannot take."""


def _positive_int(where: str, name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "an integer >= 1" + (" or null" if allow_none else "")
        raise LatencySettingsError(f"{where}.{name}: must be {allowed}, got {value!r}")


def _checked(values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` (every field) with ``input_size`` as a pair; a LatencySettingsError for the first bad field."""
    device, runtime = values["device"], values["runtime"]
    if device not in RUNTIMES_BY_DEVICE:
        raise LatencySettingsError(f"{where}.device: must be one of {DEVICES}, got {device!r}")
    allowed = RUNTIMES_BY_DEVICE[device]
    if runtime not in allowed:
        raise LatencySettingsError(f"{where}.runtime: must be one of {allowed} on device {device!r}, got {runtime!r}")
    _positive_int(where, "batch_size", values["batch_size"])
    _positive_int(where, "threads", values["threads"], allow_none=True)
    _positive_int(where, "repeats", values["repeats"])
    warmup = values["warmup"]
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise LatencySettingsError(f"{where}.warmup: must be an integer >= 0, got {warmup!r}")
    size = values["input_size"]
    if size is not None:
        pair = [size, size] if isinstance(size, int) and not isinstance(size, bool) else size
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)
        ):
            raise LatencySettingsError(
                f"{where}.input_size: must be an image side or [height, width], positive integers, got {size!r}"
            )
        size = (int(pair[0]), int(pair[1]))
    return {**values, "input_size": size}


@dataclass(frozen=True)
class LatencySettings:
    """One measurement setting.

    ``runtime``: ``eager`` (the inference form: BatchNorm folded, the batch-1 path), ``compile``
    (``torch.compile`` of that form), ``onnxruntime`` (the exported graph on ONNX Runtime's CPU
    provider, CPU only) or ``cuda_graph`` (the eager form captured in a CUDA graph, CUDA only).
    ``threads``: CPU threads for PyTorch and ONNX Runtime (None: PyTorch's current number).
    ``input_size``: image side or ``[height, width]`` (None: the model's data size). ``repeats``
    timed rounds after ``warmup`` untimed calls of each model.
    """

    device: str = "cpu"
    runtime: str = "eager"
    batch_size: int = 1
    threads: int | None = None
    input_size: int | tuple[int, int] | None = None
    repeats: int = 30
    warmup: int = 3

    def __post_init__(self) -> None:
        checked = _checked(dataclasses.asdict(self), "latency")
        object.__setattr__(self, "input_size", checked["input_size"])

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, where: str = "latency") -> LatencySettings:
        """Settings from a spec's mapping; unknown keys and bad values name ``where.field``."""
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise LatencySettingsError(f"{where}: must be a mapping of settings, got {type(values).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise LatencySettingsError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(fields)}")
        defaults = dataclasses.asdict(cls())
        return cls(**_checked({**defaults, **values}, where))

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if self.input_size is not None:
            values["input_size"] = list(cast("tuple[int, int]", self.input_size))  # made a pair in __post_init__
        return values

    def replace(self, **changes: Any) -> LatencySettings:
        return dataclasses.replace(self, **changes)
