"""Does DyNet's claim reproduce on the embedded digits? (Not a unit test: minutes of CPU.)

Trains the static ResNet18, the Dy-ResNet18 preset and its Fix twin (Dy's channels, static
kernels) with the same budget and several seeds, in small-input mode, and prints top-1 accuracy
(mean +- std) with MACs. The paper predicts Dy > Fix at (about) equal MACs, and Dy close to the
static model at about a third of its MACs.

    python -m benchmarks.reproduce_dynet --epochs 3 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import lightning as L
import torch

from dynsweep.data import EmbeddedDigitsDataModule
from dynsweep.tasks import ClassificationTask

MODELS = ("resnet18", "dy_resnet18", "fix_resnet18")


def train_once(model: str, seed: int, epochs: int, max_steps: int, batch_size: int) -> tuple[float, int]:
    """Validation top-1 after the budget, and the model's MACs at 28 x 28."""
    L.seed_everything(seed, workers=True)
    task = ClassificationTask(model, num_classes=10, in_channels=1, small_input=True, image_size=28)
    data = EmbeddedDigitsDataModule(batch_size=batch_size, seed=0)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            max_epochs=epochs,
            max_steps=max_steps,
            accelerator="cpu",
            deterministic=True,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
        )
        trainer.fit(task, data)
        (metrics,) = trainer.validate(task, data, verbose=False)
    return float(metrics["val_acc1"]), task.cost.macs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=-1, help="cap on optimiser steps (-1: none)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args(argv)
    print(f"embedded digits, small input, {args.epochs} epochs, seeds {args.seeds}, {torch.get_num_threads()} threads")
    print(f"{'model':14s} {'MMACs':>8s} {'top-1 % (mean +- std)':>24s}  per seed")
    for model in args.models:
        runs = [train_once(model, seed, args.epochs, args.max_steps, args.batch_size) for seed in args.seeds]
        accs = [100 * acc for acc, _ in runs]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(
            f"{model:14s} {runs[0][1] / 1e6:8.1f} {statistics.mean(accs):15.2f} +- {spread:5.2f}  "
            + " ".join(f"{a:.2f}" for a in accs),
            flush=True,
        )


if __name__ == "__main__":
    main()
