"""One-shot CUDA check of training: an epoch of a Dy model under bf16 autocast, then the operator.

Run on a GPU machine: ``python -m benchmarks.gpu_training_check``. Trains ``dy_resnet18`` and
``resnet18`` (small-input) for one epoch each on the embedded digits with ``bf16-mixed``
precision, prints seconds per epoch and validation top-1, checks the dyconv temperature
schedule on CUDA, then runs :mod:`benchmarks.gpu_operator_check`. Results go to docs/gpu.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import lightning as L
import torch

from benchmarks import gpu_operator_check
from dynsweep.data import EmbeddedDigitsDataModule
from dynsweep.nn import DynamicConv2d
from dynsweep.tasks import ClassificationTask


def train_epoch(model: str, spec: dict | None = None) -> dict:
    L.seed_everything(0)
    task = ClassificationTask(model, spec, num_classes=10, temperature_epochs=1)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            accelerator="gpu",
            devices=1,
            precision="bf16-mixed",
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            default_root_dir=root,
        )
        start = time.perf_counter()
        trainer.fit(task, EmbeddedDigitsDataModule(batch_size=128))
        seconds = time.perf_counter() - start
        (metrics,) = trainer.validate(task, EmbeddedDigitsDataModule(batch_size=256), verbose=False)
    temperatures = [
        float(m.temperature) for m in task.model.modules() if hasattr(m, "temperature") and m.temperature is not None
    ]
    dynamic = sum(isinstance(m, DynamicConv2d) for m in task.model.modules())
    return dict(
        model=model, seconds=seconds, val_acc1=float(metrics["val_acc1"]), dynamic=dynamic, temperatures=temperatures
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-operator", action="store_true", help="only the training epochs")
    args = parser.parse_args(argv)
    print(torch.__version__, torch.cuda.get_device_name())
    for model, spec in (("resnet18", None), ("dy_resnet18", None), ("dy_resnet18", {"mode": "dyconv"})):
        row = train_epoch(model, spec)
        final_t = sorted(set(row["temperatures"])) or "-"
        print(
            f"{model:12s} {spec!s:20s} dynamic layers {row['dynamic']:3d}  epoch {row['seconds']:6.1f} s  "
            f"val_acc1 {row['val_acc1']:.4f}  dyconv temperature after 1 epoch {final_t}",
            flush=True,
        )
    if not args.skip_operator:
        gpu_operator_check.main()


if __name__ == "__main__":
    main()
