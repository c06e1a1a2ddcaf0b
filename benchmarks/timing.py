"""Side-by-side timing for the benchmarks: medians of candidates timed in alternation
(``dynsweep.latency.interleaved``), and inference-mode candidates."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
from torch import nn

from dynsweep.latency import interleaved


def interleaved_medians(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time in seconds of each candidate, timed round-robin ``repeats`` times."""
    return {name: statistics.median(values) for name, values in interleaved(candidates, repeats, warmup).items()}


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
