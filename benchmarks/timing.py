"""Side-by-side timing: candidates measured in alternation, so machine noise hits all of them."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def interleaved_medians(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time in seconds of each candidate, timed round-robin ``repeats`` times."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def without_autograd(fn: Callable[[], object]) -> Callable[[], None]:
    """``fn`` as a timing candidate run under ``torch.inference_mode``."""

    def run() -> None:
        with torch.inference_mode():
            fn()

    return run


def inference_step(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One eval-mode forward of ``module`` on ``x`` without autograd, as a timing candidate."""
    module.eval()
    return without_autograd(lambda: module(x))
