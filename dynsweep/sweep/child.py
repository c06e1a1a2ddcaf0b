"""One trial's training, in its own process: ``python -m dynsweep.sweep.child TRIAL_DIR [--devices K]``.

Reads ``TRIAL_DIR/params.json`` (model, spec, small_input, training, data, seed), trains a
:class:`~dynsweep.tasks.ClassificationTask` with the recipe of :mod:`dynsweep.tasks.recipe`, and
writes into ``TRIAL_DIR``: ``progress.jsonl`` (one line per validation epoch: epoch, val_acc1,
step), ``metrics.json`` (the best val_acc1, the accuracy curve, or ``error`` with the reason),
Lightning's logs under ``lightning_logs/`` and ``checkpoints/`` (best and last). Exit status 0 on
success. :func:`launch` starts it, with its output in ``child.log``.

With ``--devices K`` (K > 1) the trial trains with Lightning's DDP on K processes (strategy
``ddp`` unless the training names another): Lightning starts ranks 1..K-1 by running this module
again. The validation metrics are synchronised over the ranks; rank 0 alone writes into
``TRIAL_DIR``. Every rank ends when the process that started it dies, so a ``kill -9`` of the
sweep's worker leaves no training behind. The reported val_acc1 equals one process's on the
whole validation set when the set divides into K equal shares and ``limit_val_batches`` is unset;
otherwise Lightning's distributed sampler pads the last share with repeated images, which then
count twice, and ``limit_val_batches`` limits each rank's batches (K times the images).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["child_environment", "launch", "main", "train"]

INHERITED_LAUNCHERS = ("SLURM", "TORCHELASTIC_", "JSM_NAMESPACE_")
"""Prefixes of variables of a cluster or a launcher around the sweep (SLURM, torchrun, LSF's
jsrun): inherited by a trial, they make Lightning take the trial for one of their tasks."""

INHERITED_RANKS = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "GROUP_RANK",
    "ROLE_RANK",
    "ROLE_NAME",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_WORLD_SIZE",
    "ROLE_WORLD_SIZE",
)
"""torch.distributed's rendezvous variables (torchrun sets them all); the trial sets its own."""

PARENT_PID = "DYNSWEEP_TRIAL_PARENT"
"""The process a trial's process ends with: the worker for rank 0, rank 0 for ranks 1.. (passed
in the environment, so a process whose parent died while it was starting still notices)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_environment(
    environ: Mapping[str, str] | None = None, visible_devices: str | Sequence[int | str] | None = None
) -> dict[str, str]:
    """The trial's own environment: ``environ`` (default ``os.environ``) without the variables of
    SLURM, torchrun and jsrun, with a free ``MASTER_PORT`` on 127.0.0.1 (two DDP trials on one host
    do not collide), this process as the trial's :data:`PARENT_PID` and, when given,
    ``CUDA_VISIBLE_DEVICES`` (``"2,3"`` or ``[2, 3]``)."""
    environ = os.environ if environ is None else environ
    env = {
        key: value
        for key, value in environ.items()
        if not key.startswith(INHERITED_LAUNCHERS) and key not in INHERITED_RANKS
    }
    env["MASTER_ADDR"], env["MASTER_PORT"] = "127.0.0.1", str(free_port())
    if isinstance(visible_devices, str):
        env["CUDA_VISIBLE_DEVICES"] = visible_devices
    elif visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(device) for device in visible_devices)
    env[PARENT_PID] = str(os.getpid())
    return env


def launch(
    trial_dir: Path, devices_per_trial: int = 1, visible_devices: str | Sequence[int | str] | None = None
) -> subprocess.Popen:
    """Start the child training the trial of ``trial_dir`` (its ``params.json``) on
    ``devices_per_trial`` devices (DDP when more than one), its output in ``child.log``."""
    if devices_per_trial < 1:
        raise ValueError(f"devices_per_trial must be >= 1, got {devices_per_trial}")
    command = [sys.executable, "-m", "dynsweep.sweep.child", str(trial_dir)]
    command += ["--devices", str(devices_per_trial)]
    with (Path(trial_dir) / "child.log").open("w") as log:  # Popen keeps its own descriptor
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_environment(visible_devices=visible_devices),
        )


def local_rank() -> int:
    """This process's rank in the trial: Lightning starts ranks 1.. with ``LOCAL_RANK`` set, and
    :func:`launch` starts rank 0 without it."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2))
    tmp.replace(path)


def train(trial_dir: Path, params: dict[str, Any], devices: int = 1) -> dict[str, Any]:
    """Train the trial of ``params`` on ``devices`` devices; the metrics (on every rank)."""
    import lightning as L
    import torch

    from dynsweep.tasks.recipe import make_data, make_task, make_trainer, split_training

    task_args, trainer_args, recipe = split_training(params["training"])
    if recipe.get("threads"):
        torch.set_num_threads(int(recipe["threads"]))
        os.environ["OMP_NUM_THREADS"] = str(recipe["threads"])  # else DDP's launcher divides the cores
    if devices > 1:
        trainer_args.setdefault("strategy", "ddp")
    L.seed_everything(params["seed"], workers=True, verbose=False)
    data = make_data(params["data"])
    task = make_task(params, data, **task_args)
    if recipe.get("compile"):
        task.model.compile()  # in place: the state dict, and so the checkpoints, keep their keys
    curve: list[float] = []
    last_step = [-1]
    progress = trial_dir / "progress.jsonl"

    class Progress(L.Callback):
        def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            acc = float(trainer.callback_metrics["val_acc1"])  # synchronised over the ranks
            last_step[0] = trainer.global_step
            curve.append(acc)
            line = {
                "epoch": trainer.current_epoch,
                "val_acc1": acc,
                "step": trainer.global_step,
                "time": time.time(),
            }
            if trainer.is_global_zero:
                with progress.open("a") as f:
                    f.write(json.dumps(line) + "\n")

    trainer = make_trainer(
        trial_dir,
        monitor="val_acc1",
        checkpoint_dir=trial_dir / "checkpoints",
        callbacks=[Progress()],
        interactive=False,
        devices=devices,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **trainer_args,
    )
    trainer.fit(task, datamodule=data)
    if not trainer.interrupted and (not curve or last_step[0] != trainer.global_step):
        trainer.validate(task, datamodule=data, verbose=False)  # max_steps ended fit mid-epoch
    if not curve or not all(math.isfinite(a) for a in curve):
        raise RuntimeError(f"training produced no finite validation accuracy (curve {curve})")
    return {"val_acc1": max(curve), "final_val_acc1": curve[-1], "curve": curve, "steps": trainer.global_step}


def exit_with_parent() -> None:
    """End this process when its parent dies (``kill -9``): no orphaned training.

    The parent is :data:`PARENT_PID` (else the process that started this one); this process
    becomes the parent of the DDP ranks that Lightning starts from it.
    """
    from dynsweep.sweep import parent

    watched = int(os.environ.get(PARENT_PID) or os.getppid())
    os.environ[PARENT_PID] = str(os.getpid())
    parent.exit_with_parent(watched)


def main(argv: list[str] | None = None) -> int:
    exit_with_parent()
    parser = argparse.ArgumentParser(prog="python -m dynsweep.sweep.child", description=__doc__.split("\n\n")[0])
    parser.add_argument("trial_dir", type=Path, help="the trial's directory, holding params.json")
    parser.add_argument("--devices", type=int, default=1, help="devices (DDP processes) of the trial")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.devices < 1:
        parser.error(f"--devices must be >= 1, got {args.devices}")
    trial_dir: Path = args.trial_dir
    params = json.loads((trial_dir / "params.json").read_text())
    print(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)  # the devices it was given
    start = time.time()
    try:
        metrics = train(trial_dir, params, args.devices)
    except Exception as error:  # every failure is reported to the parent
        reason = f"{type(error).__name__}: {error}"
        if local_rank() == 0:
            write_json(trial_dir / "metrics.json", {"error": reason, "traceback": traceback.format_exc()})
        print(f"trial failed: {reason}", file=sys.stderr)
        return 1
    metrics["train_seconds"] = time.time() - start
    if local_rank() == 0:
        write_json(trial_dir / "metrics.json", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
