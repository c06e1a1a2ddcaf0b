"""Training recipes as LightningModules around plain models (the models stay ``nn.Module``).

>>> import lightning as L
>>> from dynsweep.data import EmbeddedDigitsDataModule
>>> from dynsweep.tasks import ClassificationTask
>>> task = ClassificationTask("dy_resnet18", {"num_bases": 4}, num_classes=10)
>>> L.Trainer(max_epochs=1).fit(task, EmbeddedDigitsDataModule())          # doctest: +SKIP
>>> ClassificationTask.load_from_checkpoint("last.ckpt")                   # doctest: +SKIP

``task.cost`` holds MACs and parameters (logged as the hyper-parameters ``macs`` and ``params``).
:mod:`dynsweep.tasks.recipe` builds data, task and Trainer from a sweep's settings, the one
Trainer set-up of the sweep, ``dynsweep train`` and ``dynsweep evaluate``.
"""

from dynsweep.tasks.base import CheckpointMismatchError, DynamicTask
from dynsweep.tasks.callbacks import NonFiniteError, NonFiniteGuard, TemperatureAnnealing
from dynsweep.tasks.classification import ClassificationTask
from dynsweep.tasks.optim import WarmupSchedule, build_optimizer, param_groups
from dynsweep.tasks.segmentation import SegmentationTask, pixel_cross_entropy

__all__ = [
    "CheckpointMismatchError",
    "ClassificationTask",
    "DynamicTask",
    "NonFiniteError",
    "NonFiniteGuard",
    "SegmentationTask",
    "TemperatureAnnealing",
    "WarmupSchedule",
    "build_optimizer",
    "param_groups",
    "pixel_cross_entropy",
]
