"""A process that ends with the process that started it: a training child with its worker, a
spawned worker with its ``sweep run``. Without it, a ``kill -9`` of the parent leaves orphans
(re-parented to PID 1) training on."""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(parent: int | None = None, status: int = 3, poll: float = 1.0) -> None:
    """End this process (with ``status``, at once) when ``parent`` (default: the process that
    started this one) is no longer its parent."""
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(status)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
