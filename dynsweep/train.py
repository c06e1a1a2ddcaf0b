"""``dynsweep train``: Lightning's ``LightningCLI`` (jsonargparse) around a dynsweep task.

Everything is a typed argument of a class: ``--model.*`` (the task: :class:`ClassificationTask`,
or :class:`SegmentationTask` with ``--task segmentation``), ``--data`` (any LightningDataModule,
by default the embedded digits / digit canvases; ``--data CIFARDataModule --data.root DIR``),
``--trainer.*`` (Lightning's ``Trainer``: devices, strategy, num_nodes, sync_batchnorm...) and
``--checkpoint.*`` (the ``ModelCheckpoint`` keeping the best and the last checkpoint). YAML
configs come in with ``--config FILE`` and out with ``--print_config``.

dynsweep adds: ``--seed`` (an alias of Lightning's ``--seed_everything``, default 0, so two runs
of one config log the same metrics on CPU), ``--ckpt_path`` (resume a fit), the task's
``num_classes``, ``in_channels`` and ``image_size`` linked from the data module, and as default
loggers a CSVLogger plus a TensorBoardLogger when ``tensorboard`` or ``tensorboardX`` is
installed (both write into ``<default_root_dir>/lightning_logs/version_N``). The checkpoint and
Trainer defaults are the sweep's (:mod:`dynsweep.tasks.recipe`): a progress bar only when stdout
is a terminal (``--trainer.enable_progress_bar`` overrides).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from dynsweep.errors import DynsweepError
from dynsweep.tasks.recipe import (
    CHECKPOINT_DEFAULTS,
    TASKS,
    TaskKind,
    default_loggers,
    trainer_defaults,
)

LINKED = ("num_classes", "in_channels", "image_size")  # data module attributes -> task arguments


class TrainCLI(LightningCLI):
    """LightningCLI for one :class:`TaskKind`; ``run=False``: :func:`train` calls ``fit`` itself."""

    def __init__(self, kind: TaskKind, args: Sequence[str] | None = None) -> None:
        self.kind = kind
        super().__init__(
            kind.task,
            L.LightningDataModule,
            subclass_mode_data=True,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "dynsweep train", "description": __doc__.split("\n\n")[0]},
            args=list(args) if args is not None else None,
            run=False,
            auto_configure_optimizers=False,  # the task's own recipe (SGD/AdamW, warm-up, decay)
            trainer_defaults=trainer_defaults(),
        )

    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--seed_everything",
            "--seed",
            type=bool | int,
            default=self.seed_everything_default,
            help="seed of every generator (Lightning's seed_everything, workers too); true: a random one",
        )
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="resume fitting from this checkpoint (e.g. .../checkpoints/last.ckpt)",
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Recorded in config.yaml, so `dynsweep train --config config.yaml` picks the same task.
        name = next(name for name, kind in TASKS.items() if kind is self.kind)
        parser.add_argument("--task", choices=[name], default=name, help="classification or segmentation")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        checkpoint = {f"checkpoint.{key}": value for key, value in CHECKPOINT_DEFAULTS.items()}
        parser.set_defaults(
            {**checkpoint, "checkpoint.monitor": self.kind.monitor, "data": {"class_path": self.kind.data}}
        )
        for attribute in LINKED:
            parser.link_arguments(f"data.{attribute}", f"model.{attribute}", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True):
            kwargs["logger"] = default_loggers(config.get("default_root_dir") or ".")
        return super().instantiate_trainer(**kwargs)


def split_task(argv: Sequence[str]) -> tuple[str, list[str]]:
    """Take ``--task NAME`` / ``--task=NAME`` out of ``argv`` (the rest goes to LightningCLI).

    Without ``--task``, a ``task:`` key in a ``--config`` file (every saved config.yaml has one)
    decides; the default is classification.
    """
    rest, task, items, configs = [], None, list(argv), []
    while items:
        item = items.pop(0)
        if item == "--task":
            if not items:
                raise SystemExit("dynsweep train: --task needs a value: " + " or ".join(TASKS))
            task = items.pop(0)
        elif item.startswith("--task="):
            task = item.split("=", 1)[1]
        else:
            rest.append(item)
            if item == "--config" and items:
                configs.append(items[0])
            elif item.startswith("--config="):
                configs.append(item.split("=", 1)[1])
    for path in configs if task is None else []:
        try:
            with open(path) as file:
                saved = yaml.safe_load(file)
        except (OSError, yaml.YAMLError):
            continue  # LightningCLI reports an unreadable config itself
        if isinstance(saved, dict) and saved.get("task") is not None:
            task = saved["task"]
    task = task or "classification"
    if task not in TASKS:
        raise SystemExit(f"dynsweep train: unknown --task {task!r}; choose from " + ", ".join(TASKS))
    return task, rest


class TrainConfigError(DynsweepError, ValueError):
    """A class of the configuration could not be made (a data root that does not exist, say)."""


def config_error(error: ValueError) -> TrainConfigError:
    """The causes of a jsonargparse instantiation error, without its list of Union subtypes."""
    causes = [
        line.strip()[2:] for line in str(error).splitlines() if line.strip().startswith("- ") and "NoneType" not in line
    ]
    return TrainConfigError("; ".join(causes) or str(error))


def train(argv: Sequence[str]) -> int:
    """Parse ``argv`` (LightningCLI's arguments plus ``--task``) and fit; 0 when fitting ends."""
    task, rest = split_task(argv)
    with warnings.catch_warnings():  # `dynsweep train` hands over its own argv on purpose
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        try:
            cli = TrainCLI(TASKS[task], rest)
        except ValueError as error:
            raise config_error(error) from error
    cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    return 0
