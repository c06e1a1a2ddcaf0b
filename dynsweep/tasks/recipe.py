"""The one training recipe: data and task from a sweep's settings, and dynsweep's Trainer set-up.

The sweep's trial child (:mod:`dynsweep.sweep.child`), ``dynsweep evaluate`` (:func:`evaluate`)
and ``dynsweep train`` (LightningCLI, given :func:`trainer_defaults` and
:data:`CHECKPOINT_DEFAULTS`) all build their Trainer here, so loggers, checkpoints and Trainer
settings are defined once.

A sweep's ``training`` mapping holds three kinds of key (:func:`training_keys`):

- the :class:`ClassificationTask` arguments a sweep may set (:func:`task_keys`: every argument
  but those the sweep sets itself, :data:`SET_BY_SWEEP`), so a new task argument is settable
  without editing a list;
- the Trainer arguments :data:`TRAINER_KEYS`, the hardware's among them (``accelerator``,
  ``precision`` such as ``bf16-mixed``, ``strategy``, ``sync_batchnorm``);
- the recipe's own :data:`RECIPE_KEYS`: ``threads`` (torch's intra-op threads per process) and
  ``compile`` (train the model through ``torch.compile``; docs/compile.md has what it gains).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger

from dynsweep import compat
from dynsweep.tasks.base import DynamicTask, image_pair
from dynsweep.tasks.classification import ClassificationTask
from dynsweep.tasks.segmentation import SegmentationTask

SET_BY_SWEEP = ("model", "spec", "num_classes", "in_channels", "image_size", "small_input")
"""ClassificationTask arguments a sweep sets itself: from the trial's params and the data module."""

TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "limit_train_batches",
    "limit_val_batches",
    "accelerator",
    "precision",
    "strategy",
    "sync_batchnorm",
    "gradient_clip_val",
)
"""Lightning Trainer arguments a sweep's training may set (the trial's devices come from the sweep)."""

RECIPE_KEYS = ("threads", "compile")
"""The recipe's own training keys: ``threads``, torch's intra-op threads per process, and
``compile``, true to train the model through ``torch.compile``."""

CHECKPOINT_DEFAULTS: dict[str, Any] = {"filename": "best-{epoch}-{step}", "mode": "max", "save_last": True}
"""The ModelCheckpoint of every training: the best checkpoint by the task's monitored metric
(higher is better), and ``last.ckpt``."""


@dataclass(frozen=True)
class TaskKind:
    """What ``--task NAME`` selects: the task class, the default data and the monitored metric."""

    task: type[DynamicTask]
    data: str
    monitor: str


TASKS: dict[str, TaskKind] = {
    "classification": TaskKind(ClassificationTask, "dynsweep.data.EmbeddedDigitsDataModule", "val_acc1"),
    "segmentation": TaskKind(SegmentationTask, "dynsweep.data.DigitCanvasDataModule", "val_miou"),
}


# ---------------------------------------------------------------------- training keys
def task_keys() -> tuple[str, ...]:
    """The :class:`ClassificationTask` arguments a sweep's ``training`` may set, in signature order."""
    parameters = inspect.signature(ClassificationTask.__init__).parameters
    return tuple(name for name in parameters if name != "self" and name not in SET_BY_SWEEP)


def training_keys() -> frozenset[str]:
    """Every key a sweep's ``training`` may hold: task arguments, Trainer arguments, recipe keys."""
    return frozenset((*task_keys(), *TRAINER_KEYS, *RECIPE_KEYS))


def split_training(training: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``training`` as (task arguments, Trainer arguments, recipe keys); ``None`` values are left out.

    Unknown keys and bad recipe values raise a ValueError naming the key; the task and the Trainer
    check their own arguments when they are built.
    """
    unknown = sorted(set(training) - training_keys())
    if unknown:
        raise ValueError(f"training: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(training_keys()))}")
    given = {key: value for key, value in training.items() if value is not None}
    threads = given.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"training.threads: must be an integer >= 1 or null (torch's choice), got {threads}")
    if not isinstance(given.get("compile", False), bool):
        raise ValueError(f"training.compile: must be true or false, got {given['compile']!r}")
    task, trainer = set(task_keys()), set(TRAINER_KEYS)
    return (
        {k: v for k, v in given.items() if k in task},
        {k: v for k, v in given.items() if k in trainer},
        {k: v for k, v in given.items() if k in RECIPE_KEYS},
    )


# ---------------------------------------------------------------------- data and task
def data_class(class_path: str) -> type[L.LightningDataModule]:
    """A data module class by name (``dynsweep.data`` is implied) or by full class path."""
    if "." not in class_path:
        class_path = f"dynsweep.data.{class_path}"
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ValueError(f"no data module class {class_path!r}") from None


def make_data(data: Mapping[str, Any]) -> L.LightningDataModule:
    """The data module of a sweep's ``data`` mapping: ``{"class": NAME, "init_args": {...}}``."""
    return data_class(data["class"])(**(data.get("init_args") or {}))


def make_task(params: Mapping[str, Any], data: Any, **task_args: Any) -> ClassificationTask:
    """The trial's ClassificationTask: the ``model``, ``spec`` and ``small_input`` of ``params``,
    sized for ``data`` (its ``num_classes``, ``in_channels`` and ``image_size``, which every data
    module of :mod:`dynsweep.data` has). The sweep counts a trial's cost on this task too."""
    return ClassificationTask(
        params["model"],
        params["spec"],
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        small_input=params["small_input"],
        image_size=image_pair(data.image_size)[0],
        **task_args,
    )


# ---------------------------------------------------------------------- the Trainer
def default_loggers(root_dir: str | Path) -> list[Logger]:
    """CSV always; TensorBoard as well when installed, in the same ``lightning_logs/version_N``."""
    loggers: list[Logger] = [CSVLogger(str(root_dir), name="lightning_logs")]
    if compat.tensorboard_available():
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(root_dir), name="lightning_logs", version=loggers[0].version))
    return loggers


def checkpoint_callback(monitor: str, dirpath: str | Path | None = None) -> ModelCheckpoint:
    """The best checkpoint by ``monitor`` and ``last.ckpt`` (:data:`CHECKPOINT_DEFAULTS`), in
    ``dirpath`` or, without one, in Lightning's place (``<log dir>/checkpoints``)."""
    return ModelCheckpoint(None if dirpath is None else str(dirpath), monitor=monitor, **CHECKPOINT_DEFAULTS)


def trainer_defaults(interactive: bool | None = None) -> dict[str, Any]:
    """What dynsweep's Trainers change from Lightning's defaults: a progress bar only when the
    output is a terminal (``interactive=None``: whether stdout is one), not in logs and batch jobs."""
    if interactive is None:
        interactive = sys.stdout.isatty()
    return {"enable_progress_bar": bool(interactive)}


def make_trainer(
    root_dir: str | Path | None = None,
    monitor: str | None = None,
    checkpoint_dir: str | Path | None = None,
    callbacks: Sequence[L.Callback] = (),
    interactive: bool | None = None,
    **trainer_args: Any,
) -> L.Trainer:
    """A Trainer with dynsweep's set-up; ``trainer_args`` go to Lightning as given.

    With ``root_dir``: :func:`default_loggers` there and, with ``monitor``, the
    :func:`checkpoint_callback` (in ``checkpoint_dir`` if given). Without: no logger and no
    checkpoints, as evaluation needs.
    """
    callbacks = list(callbacks)
    if root_dir is not None and monitor is not None:
        callbacks.append(checkpoint_callback(monitor, checkpoint_dir))
    options: dict[str, Any] = {
        **trainer_defaults(interactive),
        "default_root_dir": None if root_dir is None else str(root_dir),
        "logger": False if root_dir is None else default_loggers(root_dir),
        "enable_checkpointing": root_dir is not None and monitor is not None,
        "callbacks": callbacks,
    }
    return L.Trainer(**{**options, **trainer_args})


def evaluate(
    task: L.LightningModule,
    data: L.LightningDataModule,
    accelerator: str = "cpu",
    limit_batches: int | float = 1.0,
) -> dict[str, float]:
    """Validation metrics of ``task`` on ``data`` (Lightning's validation loop, one device)."""
    trainer = make_trainer(
        accelerator=accelerator,
        devices=1,
        interactive=False,
        enable_model_summary=False,
        limit_val_batches=limit_batches,
    )
    (metrics,) = trainer.validate(task, datamodule=data, verbose=False)
    return {key: float(value) for key, value in metrics.items()}
