"""What ``dynsweep evaluate`` and ``dynsweep export`` do with a training checkpoint.

A checkpoint written by a dynsweep task names its task in its architecture record, and one written
through ``dynsweep train`` also holds its data module (class path and arguments, saved by
Lightning as ``datamodule_hyper_parameters``). :func:`load_task` rebuilds the task with its
weights, :func:`load_data` the data module (with overrides), :func:`evaluate` (the recipe's) runs
Lightning's validation loop, :func:`export_onnx` writes the fused inference graph and checks it with
onnxruntime.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from dynsweep.tasks import CheckpointMismatchError, DynamicTask
from dynsweep.tasks.base import CHECKPOINT_KEY, image_pair
from dynsweep.tasks.recipe import TASKS, data_class, evaluate

__all__ = [
    "evaluate",  # the recipe's, here beside the loading it goes with
    "export_onnx",
    "load_data",
    "load_task",
    "onnx_difference",
    "read_checkpoint",
]

# By task class name, as checkpoints record it; the recipe's table of tasks is the one source.
TASK_CLASSES: dict[str, type[DynamicTask]] = {kind.task.__name__: kind.task for kind in TASKS.values()}
DEFAULT_DATA: dict[str, str] = {kind.task.__name__: kind.data for kind in TASKS.values()}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dictionary, or an error that says what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointMismatchError(f"{path} is not a readable PyTorch checkpoint ({error})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint")
    return checkpoint


def task_name(checkpoint: Mapping[str, Any], path: str | Path) -> str:
    record = checkpoint.get(CHECKPOINT_KEY, {})
    name = record.get("architecture", {}).get("task") if isinstance(record, Mapping) else None
    if name not in TASK_CLASSES:
        raise CheckpointMismatchError(
            f"{path} is not a checkpoint of a dynsweep task (it has no dynsweep architecture record); "
            "dynsweep evaluate and export read the checkpoints that dynsweep train writes"
        )
    return name


def load_task(path: str | Path, expect: str | None = None) -> DynamicTask:
    """The task of checkpoint ``path`` with its weights, in eval mode on the CPU.

    ``expect`` (a task class name) refuses a checkpoint of another task.
    """
    name = task_name(read_checkpoint(path), path)
    if expect is not None and name != expect:
        raise CheckpointMismatchError(f"{path} holds a {name}, not a {expect}")
    return TASK_CLASSES[name].load_from_checkpoint(path, map_location="cpu").eval()


def load_data(
    path: str | Path, class_path: str | None = None, overrides: Mapping[str, Any] | None = None
) -> L.LightningDataModule:
    """The data module that trained checkpoint ``path``, with ``overrides`` of its arguments.

    ``class_path`` replaces the saved class (then the saved arguments are dropped); a checkpoint
    without a saved data module gets its task's default data.
    """
    checkpoint = read_checkpoint(path)
    name = task_name(checkpoint, path)
    saved = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    saved.pop("_instantiator", None)  # LightningCLI's, not an argument
    saved_class = saved.pop("_class_path", None) or DEFAULT_DATA[name]
    if class_path is not None and data_class(class_path) is not data_class(saved_class):
        saved, saved_class = {}, class_path
    chosen = data_class(saved_class)
    arguments = {**saved, **dict(overrides or {})}
    try:
        return chosen(**arguments)
    except TypeError as error:
        raise ValueError(f"{chosen.__name__}({', '.join(arguments)}): {error}") from None


def export_onnx(task: DynamicTask, path: str | Path, batch_size: int = 1, dynamic_batch: bool = False) -> torch.Tensor:
    """Write the fused inference graph of ``task.model`` (BatchNorm folded) to ``path``.

    The graph takes ``[batch_size, C, H, W]`` at the task's ``in_channels`` and ``image_size``;
    ``dynamic_batch`` makes the batch dimension symbolic. Returns the traced example input.
    """
    from dynsweep.nn.export import to_onnx

    height, width = image_pair(task.hparams.image_size)
    # torch.export specialises a dimension of size 1, so a symbolic batch is traced at 2 or more
    batch = max(batch_size, 2) if dynamic_batch else batch_size
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(batch, task.hparams.in_channels, height, width, generator=generator)
    to_onnx(task.model, example, path, dynamic_batch)
    return example


def onnx_difference(task: DynamicTask, path: str | Path, x: torch.Tensor) -> tuple[float, float]:
    """``(max |onnxruntime - PyTorch|, max |PyTorch|)`` of the exported graph on input ``x``."""
    from dynsweep.nn.export import import_extra

    ort = import_extra("onnxruntime")

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    got = torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    with torch.no_grad():
        expected = task.model.eval()(x)
    return float((got - expected).abs().max()), float(expected.abs().max())
