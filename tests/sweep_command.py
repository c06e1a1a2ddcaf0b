"""``python -m dynsweep sweep ...`` in a subprocess, as a user runs it: for the sweep and analysis tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dynsweep(*args: str, cwd: Path, timeout: float = 150, **kwargs) -> subprocess.CompletedProcess:
    """Run ``dynsweep sweep ARGS`` in ``cwd`` with one OpenMP thread; output captured as text."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dynsweep", "sweep", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
