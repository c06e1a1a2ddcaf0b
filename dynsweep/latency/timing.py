"""Side-by-side timing: candidates called in alternation, so the noise of a shared machine hits all
of them alike; spreads as median and quartiles."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

import torch

Clock = Callable[[Callable[[], object]], float]
Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class Spread:
    """Median and quartiles of ``runs`` samples (in the samples' unit)."""

    median: float
    q1: float
    q3: float
    runs: int

    @classmethod
    def of(cls, samples: Sequence[float], scale: float = 1.0) -> Spread:
        values = sorted(v * scale for v in samples)
        if len(values) == 1:
            return cls(values[0], values[0], values[0], 1)
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(median, q1, q3, len(values))

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def wall_clock(fn: Callable[[], object]) -> float:
    """Seconds ``fn`` takes, by ``time.perf_counter``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cuda_clock(fn: Callable[[], object]) -> float:
    """Seconds of GPU time ``fn`` queues, by CUDA events, from an idle device to its last kernel."""
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def interleaved(
    candidates: Mapping[Key, Callable[[], object]], repeats: int, warmup: int = 1, clock: Clock = wall_clock
) -> dict[Key, list[float]]:
    """Seconds of each candidate in each of ``repeats`` rounds (every candidate once per round,
    in order), after ``warmup`` untimed calls of each."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[Key, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            samples[name].append(clock(fn))
    return samples


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Round-by-round ratios of two candidates timed in the same rounds."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]
