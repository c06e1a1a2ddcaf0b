"""Under pytest-xdist (``make test`` runs ``-n auto``), each worker process gets its share of the
cores for PyTorch's intra-op threads, so that the workers do not oversubscribe the machine."""

from __future__ import annotations

import os

import torch


def pytest_configure(config) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
