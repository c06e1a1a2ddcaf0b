"""One trial's training, in its own process: ``python -m dynsweep.sweep.child TRIAL_DIR``.

Reads ``TRIAL_DIR/params.json`` (model, spec, small_input, training, data, seed), trains a
:class:`~dynsweep.tasks.ClassificationTask` with Lightning, and writes into ``TRIAL_DIR``:
``progress.jsonl`` (one line per validation epoch: epoch, val_acc1, step), ``metrics.json``
(the final val_acc1, the accuracy curve, or ``error`` with the reason), Lightning's CSV logs
under ``lightning_logs/`` and ``checkpoints/`` (best and last). Exit status 0 on success.
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from dynsweep.tasks.recipe import make_data, make_task

__all__ = ["main", "make_data", "make_task", "train"]  # make_data, make_task: the recipe's, for old callers


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2))
    tmp.replace(path)


def train(trial_dir: Path, params: dict[str, Any]) -> dict[str, Any]:
    import lightning as L
    import torch

    from dynsweep.tasks.recipe import make_trainer, split_training

    task_args, trainer_args, recipe = split_training(params["training"])
    if recipe.get("threads"):
        torch.set_num_threads(int(recipe["threads"]))
    L.seed_everything(params["seed"], workers=True, verbose=False)
    data = make_data(params["data"])
    task = make_task(params, data, **task_args)
    curve: list[float] = []
    last_step = [-1]
    progress = trial_dir / "progress.jsonl"

    class Progress(L.Callback):
        def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            acc = float(trainer.callback_metrics["val_acc1"])
            last_step[0] = trainer.global_step
            curve.append(acc)
            line = {
                "epoch": trainer.current_epoch,
                "val_acc1": acc,
                "step": trainer.global_step,
                "time": time.time(),
            }
            with progress.open("a") as f:
                f.write(json.dumps(line) + "\n")

    trainer = make_trainer(
        trial_dir,
        monitor="val_acc1",
        checkpoint_dir=trial_dir / "checkpoints",
        callbacks=[Progress()],
        interactive=False,
        devices=1,
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
    """End this process when the worker that started it dies (``kill -9``): no orphaned training."""
    import os
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dynsweep.sweep.child TRIAL_DIR", file=sys.stderr)
        return 2
    trial_dir = Path(argv[0])
    params = json.loads((trial_dir / "params.json").read_text())
    exit_with_parent()
    import os

    print(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)  # the devices it was given
    start = time.time()
    try:
        metrics = train(trial_dir, params)
    except Exception as error:  # noqa: BLE001 - every failure is reported to the parent
        reason = f"{type(error).__name__}: {error}"
        write_json(trial_dir / "metrics.json", {"error": reason, "traceback": traceback.format_exc()})
        print(f"trial failed: {reason}", file=sys.stderr)
        return 1
    metrics["train_seconds"] = time.time() - start
    write_json(trial_dir / "metrics.json", metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
