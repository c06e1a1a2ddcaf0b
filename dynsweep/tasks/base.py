"""What the classification and segmentation tasks share: the recipe around a plain model.

A task builds its model from a registry name and a spec, saves every constructor argument as a
hyper-parameter (the spec as the full, resolved plain dict, so a checkpoint rebuilds the exact
network even if a preset changes later), and writes an *architecture record* into every
checkpoint. Loading a checkpoint into a task that builds another architecture fails with an
error naming both, before any weight is copied.

The cost of the model (:func:`dynsweep.cost.count` at the task's ``image_size``) is computed
once, lazily, and logged to every logger as the hyper-parameters ``macs`` and ``params`` when
fitting starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities import AttributeDict
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torchmetrics import Metric, MetricCollection

import dynsweep
from dynsweep import models
from dynsweep.cost import CostReport, count
from dynsweep.errors import DynsweepError
from dynsweep.models import DynamicSpec
from dynsweep.tasks.callbacks import (
    NonFiniteGuard,
    TemperatureAnnealing,
    dyconv_predictors,
    require_finite_weights,
)
from dynsweep.tasks.optim import WarmupSchedule, build_optimizer, training_steps

CHECKPOINT_KEY = "dynsweep"


SMALL_INPUT_MAX = 64  # small_input=True stems keep full resolution: meant for 28-64 px images


class CheckpointMismatchError(DynsweepError, ValueError):
    """A checkpoint holds another architecture (or task) than the one loading it."""


def resolve_spec(model: str, spec: Mapping[str, Any] | DynamicSpec | None) -> dict[str, Any]:
    """The full spec ``build_model(model, spec)`` uses, as a plain dict (every field present)."""
    return models.resolve_spec(model, spec).to_dict()


def image_pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _describe(record: Mapping[str, Any]) -> str:
    fields = ", ".join(f"{k}={v!r}" for k, v in record.items() if k not in ("task", "spec"))
    return f"{record.get('task', '?')}({fields})"


def _differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(saved) | set(current)):
        if key == "spec" and isinstance(saved.get(key), Mapping) and isinstance(current.get(key), Mapping):
            a, b = saved[key], current[key]
            out += [f"spec.{f}: {a.get(f)!r} vs {b.get(f)!r}" for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)]
        elif saved.get(key) != current.get(key):
            out.append(f"{key}: {saved.get(key)!r} vs {current.get(key)!r}")
    return out


class DynamicTask(L.LightningModule):
    """Base of the tasks: subclasses build ``self.model`` and their metrics (:meth:`_set_metrics`)
    and define ``architecture_fields``, ``decay``, ``_loss`` and ``_evaluate``."""

    task_name: str = ""
    """The task's name in the architecture record (a subclass keeps its parent's checkpoints)."""
    architecture_fields: tuple[str, ...] = ()
    """The hyperparameters beyond model, spec, classes and channels that shape the weights."""

    decay: Literal["cosine", "poly", "constant"] = "cosine"  # the learning-rate decay after warm-up, see WarmupSchedule
    model: torch.nn.Module
    val_metrics: MetricCollection
    test_metrics: MetricCollection
    # Lightning types it ``AttributeDict | MutableMapping``; save_hyperparameters stores an AttributeDict.
    hparams: AttributeDict

    def __init__(self) -> None:
        super().__init__()
        self._cost: CostReport | None = None

    # ------------------------------------------------------------------ identity
    @property
    def architecture(self) -> dict[str, Any]:
        """What the weights of this task belong to: compared on every checkpoint load."""
        h = self.hparams
        record = {
            "task": self.task_name,
            "model": h.model,
            "spec": dict(h.spec),
            "num_classes": h.num_classes,
            "in_channels": h.in_channels,
        }
        return record | {name: h[name] for name in self.architecture_fields}

    @property
    def input_size(self) -> tuple[int, int, int]:
        """``(C, H, W)`` at which the cost is counted."""
        return (self.hparams.in_channels, *image_pair(self.hparams.image_size))

    @property
    def cost(self) -> CostReport:
        """MACs and parameters of the model at ``input_size`` (inference form, batch 1)."""
        if self._cost is None:
            self._cost = count(self.model, self.input_size)
        return self._cost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ------------------------------------------------------------------ training and evaluation
    def _set_metrics(self, metrics: dict[str, Metric | MetricCollection]) -> None:
        """The validation metrics (``val_*``) and an independent copy for testing (``test_*``)."""
        self.val_metrics = MetricCollection(metrics, prefix="val_")
        self.test_metrics = self.val_metrics.clone(prefix="test_")

    def _loss(self, batch: Any) -> torch.Tensor:
        """The training loss of one batch."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True)
        optimizer = cast(LightningOptimizer, self.optimizers())  # configure_optimizers returns one
        self.log("lr", optimizer.param_groups[0]["lr"], prog_bar=False)
        return loss

    def _evaluate(self, batch: Any, metrics: MetricCollection, prefix: str) -> None:
        """Log ``{prefix}_loss`` and update ``metrics`` on one batch (the subclass's loss and metrics)."""
        raise NotImplementedError

    def _log_evaluation(self, prefix: str, loss: torch.Tensor, metrics: MetricCollection) -> None:
        """Epoch-level loss and metrics, synchronised over DDP ranks."""
        self.log(f"{prefix}_loss", loss, on_epoch=True, sync_dist=True)
        self.log_dict(metrics, on_epoch=True, prog_bar=prefix == "val")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    # ------------------------------------------------------------------ fit set-up
    def configure_callbacks(self) -> list[L.Callback]:
        """The NaN guard always; temperature annealing when the model has ``dyconv`` predictors."""
        callbacks: list[L.Callback] = [NonFiniteGuard()]
        h = self.hparams
        if dyconv_predictors(self.model) and h.temperature_epochs > 0:
            start = h.spec["temperature"]  # the spec's, not the buffer's: a resumed run restores that
            callbacks.append(TemperatureAnnealing(start=start, end=h.temperature_end, epochs=h.temperature_epochs))
        return callbacks

    def setup(self, stage: str) -> None:
        """Check the task against the data module's ``num_classes``, ``in_channels`` and ``image_size``."""
        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if data is None:
            return
        h, name = self.hparams, type(data).__name__
        for attribute in ("num_classes", "in_channels"):
            expected = getattr(data, attribute, None)
            if expected is not None and expected != h[attribute]:
                raise ValueError(
                    f"{type(self).__name__}({attribute}={h[attribute]}) does not fit {name}, whose data has "
                    f"{attribute}={expected}; set the task's {attribute} to {expected}"
                )
        size = getattr(data, "image_size", None)
        if size is not None and image_pair(size) != image_pair(h.image_size):
            raise ValueError(
                f"{type(self).__name__}(image_size={h.image_size}) does not fit {name}, which evaluates at "
                f"{size}: the MACs would be counted at the wrong size; set the task's image_size to {size}"
            )
        if h.get("small_input") and max(image_pair(h.image_size)) > SMALL_INPUT_MAX:
            raise ValueError(
                f"{type(self).__name__}(small_input=True) is for images of at most {SMALL_INPUT_MAX} pixels "
                f"(no early downsampling), but {name} has image_size={h.image_size}; set small_input=False"
            )

    def on_fit_start(self) -> None:
        cost = self.cost
        for logger in self.loggers:
            logger.log_hyperparams({"macs": cost.macs, "params": cost.params})

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        h = self.hparams
        optimizer = build_optimizer(self.model, h.optimizer, h.lr, h.weight_decay, h.momentum, h.nesterov, h.betas)
        total, per_epoch = training_steps(self.trainer)
        if h.warmup_epochs > 0 and per_epoch != per_epoch:
            raise ValueError("warmup_epochs needs a training set with a length (this one has none); set it to 0")
        warmup = round(h.warmup_epochs * per_epoch) if h.warmup_epochs > 0 else 0
        schedule = WarmupSchedule(total, warmup, self.decay, getattr(h, "power", 0.9))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint``, with errors that name the file.

        Keyword arguments override the saved hyper-parameters; one that changes the
        architecture is refused (:class:`CheckpointMismatchError`).
        """
        try:
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        except CheckpointMismatchError as error:
            raise CheckpointMismatchError(f"{checkpoint_path}: {error}") from None
        except KeyError as error:  # Lightning reads its own keys first
            raise CheckpointMismatchError(
                f"{checkpoint_path} is not a Lightning checkpoint of a dynsweep task "
                f"(it has no {error} entry); {cls.__name__} loads the files its ModelCheckpoint writes"
            ) from error

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._trainer is not None:
            require_finite_weights(self.trainer, checkpoint)
        record: dict[str, Any] = {"architecture": self.architecture, "version": dynsweep.__version__}
        if self._cost is not None:
            record["cost"] = {
                "macs": self._cost.macs,
                "params": self._cost.params,
                "input_size": list(self.input_size),
            }
        checkpoint[CHECKPOINT_KEY] = record

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        current = self.architecture
        saved = checkpoint.get(CHECKPOINT_KEY, {}).get("architecture") if isinstance(checkpoint, dict) else None
        if saved is None:
            raise CheckpointMismatchError(
                "this checkpoint has no dynsweep architecture record, so it was not written by a dynsweep "
                f"task; {_describe(current)} cannot load it"
            )
        if isinstance(saved.get("spec"), Mapping):
            # Spec fields added since the checkpoint was written take the model's defaults, as
            # they did when this task resolved the checkpoint's hyper-parameters.
            try:
                saved = {**saved, "spec": resolve_spec(saved["model"], saved["spec"])}
            except (KeyError, ValueError):
                pass  # an unknown model or field: the comparison below names it
        differences = _differences(saved, current)
        if differences:
            raise CheckpointMismatchError(
                f"the checkpoint holds {_describe(saved)}, but this task builds {_describe(current)}; "
                f"they differ in {'; '.join(differences)}"
            )
