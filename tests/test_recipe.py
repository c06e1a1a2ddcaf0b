"""The training recipe (dynsweep.tasks.recipe): the training keys a sweep may set, derived from
the task's signature; data and task from a sweep's settings; one Trainer set-up with the same
checkpoint defaults for the sweep's child, ``dynsweep evaluate`` and ``dynsweep train``."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from dynsweep.data import EmbeddedDigitsDataModule
from dynsweep.tasks import ClassificationTask, recipe
from dynsweep.tasks.recipe import (
    CHECKPOINT_DEFAULTS,
    RECIPE_KEYS,
    SET_BY_SWEEP,
    TASKS,
    TRAINER_KEYS,
    make_data,
    make_task,
    make_trainer,
    split_training,
    task_keys,
    training_keys,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning",
    "ignore::DeprecationWarning",
    "ignore::FutureWarning",  # Lightning's own
)

SPEC = {"width_mult": 0.25, "stages": [3], "num_bases": 2}
PARAMS = {"model": "dy_resnet18", "spec": SPEC, "small_input": True}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread, as in test_tasks.py: tiny models on a small shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_task_argument_a_sweep_may_set_is_a_training_key():
    arguments = set(inspect.signature(ClassificationTask.__init__).parameters) - {"self"}
    settable = arguments - set(SET_BY_SWEEP)
    assert set(task_keys()) == settable
    assert training_keys() == settable | set(TRAINER_KEYS) | set(RECIPE_KEYS)
    assert {"betas", "optimizer", "lr", "label_smoothing", "threads", "max_epochs"} <= training_keys()
    assert not set(SET_BY_SWEEP) & training_keys()


def test_a_new_task_argument_is_settable_without_editing_a_list(monkeypatch):
    class WiderTask(ClassificationTask):
        def __init__(self, model: str = "dy_resnet18", spec=None, dropout: float = 0.0, **kwargs) -> None:
            super().__init__(model, spec, **kwargs)

    monkeypatch.setattr(recipe, "ClassificationTask", WiderTask)
    assert "dropout" in task_keys() and "dropout" in training_keys()
    assert split_training({"dropout": 0.2, "max_steps": 3})[0] == {"dropout": 0.2}


def test_split_training_sorts_the_keys_and_names_an_unknown_one():
    training = {"betas": [0.8, 0.95], "optimizer": "adamw", "max_steps": 2, "accelerator": "cpu"}
    training["threads"] = 1
    task, trainer, own = split_training({**training, "lr": None})
    assert task == {"betas": [0.8, 0.95], "optimizer": "adamw"}  # None: the task's default
    assert trainer == {"max_steps": 2, "accelerator": "cpu"}
    assert own == {"threads": 1}
    with pytest.raises(ValueError, match=r"training: unknown key 'learning_rate'; allowed: .*\blr\b"):
        split_training({"learning_rate": 0.1})
    with pytest.raises(ValueError, match=r"training\.compile: must be true or false, got 'yes'"):
        split_training({"compile": "yes"})
    with pytest.raises(ValueError, match=r"training\.threads: must be an integer >= 1"):
        split_training({"threads": 0})
    assert split_training({"compile": True, "threads": 2})[2] == {"compile": True, "threads": 2}
    with pytest.raises(ValueError, match=r"training\.compile: must be true or false, got 'yes'"):
        split_training({"compile": "yes"})
    with pytest.raises(ValueError, match=r"training\.threads: must be an integer >= 1"):
        split_training({"threads": 0})
    assert split_training({"compile": True, "threads": 2})[2] == {"compile": True, "threads": 2}


def test_betas_from_a_sweep_reach_the_optimizer():
    data = make_data({"class": "EmbeddedDigitsDataModule", "init_args": {"batch_size": 8}})
    task_args, trainer_args, _ = split_training(
        {"optimizer": "adamw", "betas": [0.8, 0.95], "max_steps": 1, "limit_val_batches": 0}
    )
    task = make_task(PARAMS, data, **task_args)
    trainer = make_trainer(interactive=False, accelerator="cpu", devices=1, enable_model_summary=False, **trainer_args)
    trainer.fit(task, datamodule=data)
    (optimizer,) = trainer.optimizers
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["betas"] == (0.8, 0.95)


def test_make_data_and_make_task_size_the_task_for_the_data():
    data = make_data({"class": "EmbeddedDigitsDataModule", "init_args": {"batch_size": 8}})
    assert isinstance(data, EmbeddedDigitsDataModule) and data.hparams.batch_size == 8
    task = make_task(PARAMS, data, lr=0.2)
    h = task.hparams
    assert (h.num_classes, h.in_channels, h.image_size, h.small_input, h.lr) == (10, 1, 28, True, 0.2)
    assert h.spec["num_bases"] == 2
    with pytest.raises(ValueError, match=r"no data module class 'dynsweep\.data\.NoSuchDataModule'"):
        make_data({"class": "NoSuchDataModule"})


def _checkpoint_settings(callback: ModelCheckpoint) -> dict:
    return {
        "monitor": callback.monitor,
        "mode": callback.mode,
        "save_last": callback.save_last,
        "filename": callback.filename,
    }


def test_a_recipe_trainer_has_the_shared_checkpoint_defaults(tmp_path: Path):
    trainer = make_trainer(tmp_path, monitor="val_acc1", checkpoint_dir=tmp_path / "ckpt", interactive=False)
    (callback,) = trainer.checkpoint_callbacks
    assert _checkpoint_settings(callback) == {"monitor": "val_acc1", **CHECKPOINT_DEFAULTS}
    assert Path(callback.dirpath) == tmp_path / "ckpt"
    assert isinstance(trainer.loggers[0], CSVLogger)
    assert Path(trainer.loggers[0].root_dir) == tmp_path / "lightning_logs"
    assert trainer.progress_bar_callback is None
    assert make_trainer(tmp_path, interactive=True).progress_bar_callback is not None

    evaluation = make_trainer(interactive=False)  # as evaluate() builds it: nothing written
    assert evaluation.checkpoint_callbacks == [] and evaluation.loggers == []


def test_dynsweep_train_has_the_same_checkpoint_defaults(tmp_path: Path):
    from dynsweep.train import TrainCLI

    for name, kind in TASKS.items():
        arguments = ["--model.model", "dy_resnet18", "--model.spec", str(SPEC).replace("'", '"')]
        arguments += ["--trainer.default_root_dir", str(tmp_path / name), "--trainer.accelerator", "cpu"]
        if name == "segmentation":
            arguments += ["--data.num_train", "4", "--data.num_val", "4"]
        cli = TrainCLI(kind, arguments)
        (callback,) = cli.trainer.checkpoint_callbacks
        assert _checkpoint_settings(callback) == {"monitor": kind.monitor, **CHECKPOINT_DEFAULTS}
        assert cli.trainer.progress_bar_callback is None  # pytest's stdout is not a terminal
