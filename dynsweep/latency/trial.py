"""A sweep trial's latency: measured once per network and setting, never two measurements at once.

:func:`measure_for_trial` looks the trial's network up in a per-host cache (a JSON file in
``cache_dir``), keyed on the network's structure, the reference's, the host, device, runtime,
threads, batch size, input size, repeats and the library versions. On a miss it takes a host-wide
lock (``fcntl.flock`` on one file, by default in the system's temporary folder, for every sweep on
the host), looks again (another worker may just have measured it), measures the network
interleaved with the reference, and stores the result. A failed measurement raises
:class:`LatencyError` with the reason and is not stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dynsweep.errors import DynsweepError
from dynsweep.latency.measure import LatencyReport, host_name, input_shape, measure_with, runtime_versions
from dynsweep.latency.runtimes import structure_key
from dynsweep.latency.settings import LatencySettings

LOCK_ENV = "DYNSWEEP_LATENCY_LOCK"


class LatencyError(DynsweepError, RuntimeError):
    """A latency measurement failed; the message is the reason, in one line."""


@dataclass(frozen=True)
class LatencyRecord:
    """A trial's latency report, whether it came from the cache, and what the lookup cost."""

    report: LatencyReport
    key: str
    cached: bool
    measure_seconds: float  # 0 for a cache hit
    lock_wait_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), **{k: v for k, v in asdict(self).items() if k != "report"}}


def default_lock_path() -> Path:
    """The host-wide lock file: ``$DYNSWEEP_LATENCY_LOCK``, else in the system's temporary folder."""
    return Path(os.environ.get(LOCK_ENV) or Path(tempfile.gettempdir()) / "dynsweep-latency.lock")


@contextlib.contextmanager
def host_lock(path: str | Path | None = None) -> Iterator[float]:
    """Hold the host-wide measurement lock inside the block; yields the seconds spent waiting."""
    path = Path(path) if path is not None else default_lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - start
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def cache_key(
    model: nn.Module, reference: nn.Module, settings: LatencySettings, shape: Sequence[int]
) -> tuple[str, dict[str, Any]]:
    """``(digest, fields)`` of one measurement: what makes two measurements the same."""
    fields = {
        "model": structure_key(model),
        "reference": structure_key(reference),
        "host": host_name(),
        "device": settings.device,
        "runtime": settings.runtime,
        "threads": settings.threads,
        "batch_size": settings.batch_size,
        "input_size": list(shape[1:]),
        "repeats": settings.repeats,
        "warmup": settings.warmup,
        "versions": runtime_versions(settings.runtime),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24], fields


def cache_path(cache_dir: str | Path) -> Path:
    """This host's cache file in ``cache_dir``."""
    return Path(cache_dir) / f"latency-{host_name()}.json"


def read_cache(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as error:
        raise LatencyError(f"the latency cache {path} is not valid JSON ({error}); remove it to start afresh") from None


def _write_cache(path: Path, entries: Mapping[str, Any]) -> None:
    """Replace the file in one step, so a reader without the lock sees the old or the new cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(entries, indent=1, sort_keys=True))
    temporary.replace(path)


def measure_for_trial(
    model: nn.Module,
    reference: nn.Module,
    settings: LatencySettings,
    cache_dir: str | Path,
    input_size: Sequence[int],
    lock_path: str | Path | None = None,
) -> LatencyRecord:
    """The latency of ``model`` against ``reference`` on ``(C, H, W)`` inputs (the settings'
    ``input_size`` replaces H and W), from this host's cache or measured under the host lock.

    ``settings.threads`` None is resolved to PyTorch's current thread count before the lookup.
    Raises :class:`LatencyError` (one line: the runtime and the reason) if the measurement fails.
    """
    if settings.threads is None:
        settings = settings.replace(threads=torch.get_num_threads())
    shape = input_shape(input_size, settings)
    key, fields = cache_key(model, reference, settings, shape)
    path = cache_path(cache_dir)
    if key in (cached := read_cache(path)):
        return LatencyRecord(LatencyReport.from_dict(cached[key]["report"]), key, True, 0.0, 0.0)
    with host_lock(lock_path) as waited:
        entries = read_cache(path)
        if key in entries:
            return LatencyRecord(LatencyReport.from_dict(entries[key]["report"]), key, True, 0.0, waited)
        start = time.perf_counter()
        try:
            report = measure_with(model, input_size, settings, reference, graph_cache=Path(cache_dir) / "graphs")
        except Exception as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            where = f"{settings.runtime} on {settings.device}"
            raise LatencyError(f"latency measurement failed ({where}): {reason}") from error
        seconds = time.perf_counter() - start
        entries[key] = {"key": fields, "report": report.to_dict(), "measured_at": time.time(), "seconds": seconds}
        _write_cache(path, entries)
    return LatencyRecord(report, key, False, seconds, waited)
