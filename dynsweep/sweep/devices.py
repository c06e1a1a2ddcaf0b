"""Devices per worker: ``--devices 0,1,2,3 --devices-per-trial K`` splits the devices into groups of
K, one worker per group; each worker's trials train with ``CUDA_VISIBLE_DEVICES`` set to its group
(Lightning DDP inside the trial when K > 1). Devices are options of a process, never stored in the
study: device ids differ between hosts.
"""

from __future__ import annotations

import os

from dynsweep.errors import UsageError


def parse_devices(text: str | None) -> list[str] | None:
    """``"0,1,3"`` -> ``["0", "1", "3"]``; ``"all"``: every GPU this process sees; None: no pinning.

    Ids count within this process's ``CUDA_VISIBLE_DEVICES`` when it is set (as under SLURM).
    """
    if text is None:
        return None
    if text == "all":
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            raise UsageError("--devices all: no GPU is visible to this process; give ids, e.g. --devices 0,1")
        return [str(i) for i in range(count)]
    devices = [item.strip() for item in text.split(",") if item.strip()]
    if not devices or not all(item.isdigit() for item in devices):
        raise UsageError(f"--devices takes device ids separated by commas (e.g. 0,1,2,3) or all, got {text!r}")
    if len(set(devices)) != len(devices):
        raise UsageError(f"--devices lists a device twice: {text}")
    return devices


def device_groups(devices: list[str] | None, per_trial: int | None, workers: int | None) -> list[list[str]] | None:
    """The device group of each worker, or None when no devices are given.

    ``--devices`` sets the number of workers: ``--workers`` too is an error unless the numbers
    agree, and devices that do not divide into groups of ``per_trial`` are an error naming both.
    """
    if devices is None:
        if per_trial not in (None, 1):
            raise UsageError("--devices-per-trial needs --devices (the ids to split into groups)")
        return None
    per_trial = per_trial or 1
    if per_trial < 1:
        raise UsageError(f"--devices-per-trial must be >= 1, got {per_trial}")
    if len(devices) % per_trial:
        raise UsageError(
            f"--devices: {len(devices)} devices ({','.join(devices)}) do not divide into groups of "
            f"--devices-per-trial {per_trial}"
        )
    groups = [devices[i : i + per_trial] for i in range(0, len(devices), per_trial)]
    if workers is not None and workers != len(groups):
        raise UsageError(
            f"--workers {workers} disagrees with --devices: {len(devices)} devices in groups of {per_trial} "
            f"make {len(groups)} workers; give one or the other"
        )
    return groups


def visible_devices(group: list[str]) -> str:
    """``CUDA_VISIBLE_DEVICES`` for a group: its ids mapped through this process's own
    ``CUDA_VISIBLE_DEVICES`` when that is set (group ``0,1`` under ``4,5,6,7`` is ``4,5``)."""
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not inherited:
        return ",".join(group)
    ids = [item.strip() for item in inherited.split(",") if item.strip()]
    outside = [d for d in group if int(d) >= len(ids)]
    if outside:
        raise UsageError(
            f"--devices {','.join(outside)}: this process sees {len(ids)} devices (CUDA_VISIBLE_DEVICES={inherited})"
        )
    return ",".join(ids[int(d)] for d in group)
