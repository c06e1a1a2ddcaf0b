"""Training callbacks: DY-CNN's temperature annealing and a guard against non-finite losses.

- :class:`TemperatureAnnealing`: DY-CNN (Chen et al., CVPR 2020) trains its softmax attention
  with a temperature that falls linearly from 30 to 1 over the first 10 epochs, so that early
  on every kernel is used and trained. The callback sets that temperature on every ``dyconv``
  :class:`~dynsweep.nn.CoefficientPredictor` of the model before each training batch, from the
  trainer's position alone (so a resumed run continues the schedule where it was).
- :class:`NonFiniteGuard`: stops training at the first NaN or infinite loss, *before* its
  backward pass, so no optimiser step is taken with it and the parameters stay those of the
  last good step; and refuses to write a checkpoint whose weights are not finite, so ``last.ckpt``
  and every other checkpoint already written stay good. Lightning's ``EarlyStopping(
  check_finite=True)`` only stops at the end of an epoch or validation run, after the bad
  steps, and ``ModelCheckpoint`` would then save the NaN weights; hence this guard.
"""

from __future__ import annotations

import math
import os

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from dynsweep.errors import DynsweepError
from dynsweep.nn import CoefficientPredictor


def dyconv_predictors(module: torch.nn.Module) -> list[CoefficientPredictor]:
    """Every coefficient predictor of ``module`` in ``dyconv`` (softmax with temperature) mode."""
    return [m for m in module.modules() if isinstance(m, CoefficientPredictor) and m.mode == "dyconv"]


class TemperatureAnnealing(L.Callback):
    """Anneal the ``dyconv`` softmax temperature linearly from ``start`` to ``end``.

    The schedule runs over the first ``epochs`` epochs (fractions of an epoch count, batch by
    batch) or, if ``steps`` is given, over the first ``steps`` optimiser steps; after it the
    temperature stays at ``end``. A model without ``dyconv`` predictors is left alone (with a
    warning).
    """

    def __init__(self, start: float = 30.0, end: float = 1.0, epochs: float = 10.0, steps: int | None = None) -> None:
        if start <= 0 or end <= 0:
            raise ValueError(f"temperatures must be > 0, got start={start}, end={end}")
        if (steps is None and epochs <= 0) or (steps is not None and steps <= 0):
            raise ValueError(f"the schedule needs epochs > 0 or steps > 0, got epochs={epochs}, steps={steps}")
        self.start, self.end, self.epochs, self.steps = float(start), float(end), float(epochs), steps
        self._predictors: list[CoefficientPredictor] = []
        self._current: float | None = None

    def temperature(self, progress: float) -> float:
        """The temperature at ``progress`` (0: start of training, 1: end of the schedule)."""
        return self.start + (self.end - self.start) * min(1.0, max(0.0, progress))

    def progress(self, trainer: L.Trainer, batch_idx: int = 0) -> float:
        if self.steps is not None:
            return trainer.global_step / self.steps
        batches = trainer.num_training_batches
        fraction = batch_idx / batches if batches and math.isfinite(batches) else 0.0
        return (trainer.current_epoch + fraction) / self.epochs

    def set_temperature(self, temperature: float) -> None:
        if temperature != self._current:
            for predictor in self._predictors:
                predictor.set_temperature(temperature)
            self._current = temperature

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._predictors, self._current = dyconv_predictors(pl_module), None
        if not self._predictors:
            rank_zero_warn("TemperatureAnnealing: the model has no 'dyconv' coefficient predictor; nothing to anneal")
        self.set_temperature(self.temperature(self.progress(trainer)))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.set_temperature(self.temperature(self.progress(trainer, batch_idx)))


class NonFiniteError(DynsweepError, RuntimeError):
    """Training met a NaN or infinite loss, or was about to save NaN or infinite weights."""


def _checkpoint_paths(trainer: L.Trainer) -> list[str]:
    paths = []
    for callback in trainer.checkpoint_callbacks:
        for path in (getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", "")):
            if path and os.path.isfile(path) and path not in paths:
                paths.append(path)
    return paths


class NonFiniteGuard(L.Callback):
    """Stop at the first non-finite loss, before its backward pass; never save non-finite weights.

    Under data-parallel training the ranks agree (any rank's bad loss stops all of them), so no
    rank is left waiting in a collective.
    """

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        kept = _checkpoint_paths(trainer)
        where = (
            f"the checkpoints already written are intact ({', '.join(repr(p) for p in kept)})"
            if kept
            else "no checkpoint had been written yet"
        )
        value = loss.detach().float().item() if loss.numel() == 1 else "not finite"
        raise NonFiniteError(
            f"training stopped: the loss is {value} at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}). No optimiser step was taken with it, so the parameters are "
            f"those of the last good step (BatchNorm statistics may have seen the bad batch), and {where}. "
            "Lower the learning rate, lengthen the warm-up, clip gradients (Trainer(gradient_clip_val=...)) "
            "or check the data for NaN."
        )

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        require_finite_weights(trainer, checkpoint)


def require_finite_weights(trainer: L.Trainer, checkpoint: dict) -> None:
    """Raise NonFiniteError, before anything is written, if the checkpoint's weights are not finite.

    Lightning calls callbacks' ``on_save_checkpoint`` only for full checkpoints; the tasks call
    this from their own ``on_save_checkpoint`` too, which also runs for weights-only ones.
    """
    state = checkpoint.get("state_dict", {})
    floats = [(name, t) for name, t in state.items() if torch.is_tensor(t) and t.is_floating_point()]
    if not floats:
        return
    finite = torch.stack([torch.isfinite(t).all().cpu() for _, t in floats])
    if bool(finite.all()):
        return
    names = [name for (name, _), ok in zip(floats, finite.tolist(), strict=True) if not ok]
    kept = ", ".join(repr(p) for p in _checkpoint_paths(trainer)) or "none"
    raise NonFiniteError(
        f"refusing to save a checkpoint at step {trainer.global_step}: {len(names)} tensors hold NaN or "
        f"infinite values ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}); the checkpoints "
        f"already written are kept ({kept})"
    )
