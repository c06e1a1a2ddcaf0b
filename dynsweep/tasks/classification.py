"""Image classification around any registered model and spec, with the DyNet paper's recipe.

The recipe (DyNet, Zhang et al., arXiv 2004.10694): SGD with momentum 0.9, cosine decay, label
smoothing 0.1, weight decay 5e-5, here with a linear warm-up per step and no decay on norms and
biases. The paper's lr 0.8 at batch 2048 scales linearly to the default 0.05 at batch 128.
AdamW is the option. Top-1 and top-5 accuracy (top-5 only with more than 5 classes) come from
torchmetrics; the validation loss is the plain cross-entropy, without label smoothing.

The defaults fit the embedded digits (10 classes, one channel, 28 x 28, small-input stem).
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from dynsweep.models import DynamicSpec, build_model
from dynsweep.tasks.base import DynamicTask, resolve_spec


class ClassificationTask(DynamicTask):
    """A LightningModule training ``build_model(model, spec, ...)`` for classification.

    Model: ``model`` (a registry name), ``spec`` (a dict of DynamicSpec fields changing the
    model's own spec; a DynamicSpec is accepted too), ``num_classes``, ``in_channels``,
    ``small_input`` (the 3x3 stride-1 stem for 28 to 64 pixel images), ``image_size`` (the side
    at which MACs are counted; the data module's).
    Optimiser: ``optimizer`` (``"sgd"`` or ``"adamw"``), ``lr``, ``momentum`` and ``nesterov``
    (SGD), ``betas`` (AdamW), ``weight_decay`` (weights only), ``warmup_epochs`` (linear, per
    step), ``lr_decay`` (``"cosine"`` or ``"constant"`` after the warm-up).
    Loss: ``label_smoothing``. DY-CNN (``mode="dyconv"``): the softmax temperature falls from the
    spec's ``temperature`` to ``temperature_end`` over ``temperature_epochs`` (0: no annealing).
    """

    task_name = "ClassificationTask"
    architecture_fields = ("small_input",)

    def __init__(
        self,
        model: str = "dy_resnet18",
        spec: dict[str, Any] | None = None,
        num_classes: int = 10,
        in_channels: int = 1,
        small_input: bool = True,
        image_size: int = 28,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.05,
        momentum: float = 0.9,
        nesterov: bool = False,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 5e-5,
        warmup_epochs: float = 1.0,
        lr_decay: Literal["cosine", "constant"] = "cosine",
        label_smoothing: float = 0.1,
        temperature_end: float = 1.0,
        temperature_epochs: float = 10.0,
    ) -> None:
        super().__init__()
        if isinstance(spec, DynamicSpec) or spec is None or isinstance(spec, dict):
            spec = resolve_spec(model, spec)  # saved as the full plain dict: the exact network
        else:
            raise ValueError(f"spec must be a dict, a DynamicSpec or None, got {type(spec).__name__}")
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        if lr_decay not in ("cosine", "constant"):
            raise ValueError(f"lr_decay must be 'cosine' or 'constant', got {lr_decay!r}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        # A list, not a tuple, under the argument's name (save_hyperparameters reads the local):
        # hparams.yaml stays plain YAML.
        betas = cast(Any, [float(b) for b in betas])
        self.save_hyperparameters()
        self.hparams.update(spec=spec, betas=betas)  # LightningCLI has Lightning save them as given
        self.decay = lr_decay
        self.model = build_model(model, spec, num_classes=num_classes, in_channels=in_channels, small_input=small_input)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        metrics: dict[str, Metric | MetricCollection] = {
            "acc1": MulticlassAccuracy(num_classes, top_k=1, average="micro")
        }
        if num_classes > 5:
            metrics["acc5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        self._set_metrics(metrics)

    def _loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        images, labels = batch
        return self.criterion(self.model(images), labels)

    def _evaluate(self, batch: tuple[Tensor, Tensor], metrics: MetricCollection, prefix: str) -> None:
        images, labels = batch
        logits = self.model(images)
        metrics.update(logits, labels)
        self._log_evaluation(prefix, F.cross_entropy(logits, labels), metrics)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return torch.softmax(self.model(images), dim=1)
