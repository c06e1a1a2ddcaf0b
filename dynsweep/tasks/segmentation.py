"""Semantic segmentation with a dilated FCN on any registered backbone and spec.

The DyNet paper's segmentation setting is a Dilated FCN on Cityscapes (ResNet50 and Dy-ResNet50
backbones, output stride 8). The recipe is the usual one for it: pixel cross-entropy that
ignores ``ignore_index`` (255), SGD with momentum 0.9, weight decay 1e-4, and "poly" decay of
the learning rate, ``(1 - t) ** 0.9`` per step (optionally after a linear warm-up). Mean IoU
comes from torchmetrics' JaccardIndex over the whole validation set, averaged over the classes
present in it; pixel accuracy too.

The defaults fit the embedded digit canvases (11 classes, one channel, 64 x 64).
"""

from __future__ import annotations

from typing import Any, Literal, cast

from torch import Tensor
from torch.nn import functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from dynsweep.models import DynamicSpec, build_segmentation_model
from dynsweep.tasks.base import DynamicTask, image_pair, resolve_spec


def pixel_cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """Mean cross-entropy over the pixels that are not ignored (0, not NaN, when all are)."""
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    return total / (target != ignore_index).sum().clamp(min=1)


class SegmentationTask(DynamicTask):
    """A LightningModule training ``build_segmentation_model(model, spec, ...)``.

    Model: ``model`` (a registered backbone), ``spec``, ``num_classes``, ``in_channels``,
    ``output_stride`` (8 or 16), ``image_size`` (``(H, W)`` at which MACs are counted: the
    evaluation size of the data). Loss: pixel cross-entropy ignoring ``ignore_index``.
    Optimiser: as :class:`~dynsweep.tasks.ClassificationTask`, with ``power`` of the poly decay.
    """

    decay = "poly"

    task_name = "SegmentationTask"
    architecture_fields = ("output_stride",)

    def __init__(
        self,
        model: str = "dy_resnet18",
        spec: dict[str, Any] | None = None,
        num_classes: int = 11,
        in_channels: int = 1,
        output_stride: int = 8,
        image_size: tuple[int, int] = (64, 64),
        ignore_index: int = 255,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        nesterov: bool = False,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 1e-4,
        warmup_epochs: float = 0.0,
        power: float = 0.9,
        temperature_end: float = 1.0,
        temperature_epochs: float = 10.0,
    ) -> None:
        super().__init__()
        if isinstance(spec, DynamicSpec) or spec is None or isinstance(spec, dict):
            spec = resolve_spec(model, spec)
        else:
            raise ValueError(f"spec must be a dict, a DynamicSpec or None, got {type(spec).__name__}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is a class index (num_classes={num_classes})")
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        # Lists, not tuples, under the arguments' names (save_hyperparameters reads these locals):
        # hparams.yaml stays plain YAML.
        image_size = cast(Any, list(image_pair(image_size)))
        betas = cast(Any, [float(b) for b in betas])
        self.save_hyperparameters()
        self.hparams.update(spec=spec, betas=betas, image_size=image_size)  # LightningCLI: saved as given
        self.model = build_segmentation_model(
            model, spec, num_classes=num_classes, in_channels=in_channels, output_stride=output_stride
        )
        metrics: dict[str, Metric | MetricCollection] = {
            "miou": MulticlassJaccardIndex(num_classes, average="macro", ignore_index=ignore_index),
            "pixel_acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=ignore_index),
        }
        self._set_metrics(metrics)

    def _loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        images, masks = batch
        return pixel_cross_entropy(self.model(images), masks, self.hparams.ignore_index)

    def _evaluate(self, batch: tuple[Tensor, Tensor], metrics: MetricCollection, prefix: str) -> None:
        images, masks = batch
        logits = self.model(images)
        metrics.update(logits.argmax(1), masks)
        self._log_evaluation(prefix, pixel_cross_entropy(logits, masks, self.hparams.ignore_index), metrics)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.model(images).argmax(1)
