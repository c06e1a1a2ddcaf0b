"""The optimiser and learning-rate schedule of the training recipes.

- :func:`param_groups`: weight decay on weights only. Normalisation layers (BatchNorm, GroupNorm,
  LayerNorm, ...), biases and every other 1-d parameter go to a group without decay, as in the
  usual ImageNet recipes; the kernel bases of a DynamicConv2d and the predictor's weights decay.
- :func:`build_optimizer`: SGD with momentum (the DyNet paper's, Nesterov optional) or AdamW.
- :class:`WarmupSchedule`: per-step factor for ``LambdaLR``: linear warm-up, then cosine decay
  (classification) or polynomial decay (segmentation, power 0.9) to zero, or constant.
"""

from __future__ import annotations

import math
from typing import Literal, cast

import torch
from torch import nn

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm, nn.LocalResponseNorm)
OPTIMIZERS = ("sgd", "adamw")
DECAYS = ("cosine", "poly", "constant")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: ``"decay"`` (weights of dimension >= 2 outside norm layers) and ``"no_decay"``
    (norm layers, biases, every 1-d parameter).

    A parameter shared by several modules is listed once. Frozen parameters are left out.
    """
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            # Dynamic layers' biases are [out, num_bases]: a bias all the same.
            if isinstance(module, NORM_LAYERS) or param.ndim <= 1 or name.endswith("bias"):
                no_decay.append(param)
            else:
                decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def build_optimizer(
    model: nn.Module,
    name: Literal["sgd", "adamw"],
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over :func:`param_groups`."""
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=cast("tuple[float, float]", tuple(betas)))  # may come as a list
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


class WarmupSchedule:
    """Learning-rate factor of optimiser step ``step`` (``LambdaLR``'s ``lr_lambda``).

    Steps ``0 .. warmup_steps - 1`` rise linearly to 1 (step ``s`` gets ``(s + 1) / (warmup + 1)``);
    the remaining steps up to ``total_steps`` decay from 1 towards 0 (``cosine``:
    ``(1 + cos(pi t)) / 2``; ``poly``: ``(1 - t) ** power``; ``constant``: 1), with ``t`` the
    fraction of the decay phase done, so the last step still learns. A callable object, not a
    lambda, so the scheduler's state pickles into checkpoints.
    """

    def __init__(
        self,
        total_steps: int,
        warmup_steps: int = 0,
        decay: Literal["cosine", "poly", "constant"] = "cosine",
        power: float = 0.9,
    ) -> None:
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")
        if total_steps < 1 or not 0 <= warmup_steps:
            raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps}, {warmup_steps}")
        self.total_steps, self.warmup_steps = int(total_steps), min(int(warmup_steps), int(total_steps) - 1)
        self.decay, self.power = decay, power

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        t = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.decay == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        if self.decay == "poly":
            return (1.0 - t) ** self.power
        return 1.0


def training_steps(trainer) -> tuple[int, float]:
    """``(total optimiser steps, optimiser steps per epoch)`` of a fit (``nan`` per epoch when the
    training set has no length)."""
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total):
        raise ValueError(
            "the learning-rate schedule needs a finite training length: set the trainer's max_epochs or max_steps"
        )
    if trainer.train_dataloader is None:  # with max_steps alone Lightning estimates without loading data
        trainer.fit_loop.setup_data()
    batches = trainer.num_training_batches
    per_epoch = math.ceil(batches / trainer.accumulate_grad_batches) if math.isfinite(batches) else float("nan")
    return int(total), per_epoch
