"""Semantic segmentation data: digit canvases built from the embedded digits, Cityscapes and VOC.

Every dataset here yields ``(image float32 [C, H, W], mask int64 [H, W])``; mask values are class
indices in ``0 .. num_classes - 1`` or ``ignore_index`` (255).

- :class:`DigitCanvases`: the embedded default. Digits of one split of the embedded MNIST subset
  are placed on black canvases, one per 32 x 32 cell at most (never overlapping), at a random
  offset. A pixel is class ``1 + digit`` within 3 pixels of a digit's stroke, ignored on the
  one-pixel boundary of that region (as VOC ignores object boundaries), and background (0)
  elsewhere. Canvases are generated once from a seed, so the sets are fixed.
- :class:`CityscapesSegmentation`: torchvision's ``Cityscapes`` (fine annotations, ``labelIds``),
  with the 34 label ids mapped to the 19 training classes (everything else ignored).
- :class:`VOCSegmentation`: torchvision's ``VOCSegmentation`` (21 classes, 255 on boundaries).

:class:`SegmentationTransform` is the joint image/mask pipeline of the two real sets: random
scale, crop (padded with ignored pixels) and flip for training; normalisation for both.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset
from torchvision import datasets, tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dynsweep.data import embedded
from dynsweep.data.errors import DatasetFormatError, DatasetNotFoundError, require_dir
from dynsweep.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD

IGNORE_INDEX = 255
CANVAS_CELL = 32


# ---------------------------------------------------------------------- embedded digit canvases
def _dilate(mask: Tensor, radius: int) -> Tensor:
    """``mask`` ([N, H, W] bool) grown by ``radius`` pixels (a square structuring element)."""
    k = 2 * radius + 1
    grown = F.max_pool2d(mask[:, None].float(), (k, 1), 1, (radius, 0))  # separable: rows, then columns
    return F.max_pool2d(grown, (1, k), 1, (0, radius))[:, 0] > 0


class DigitCanvases(Dataset):
    """Canvases of embedded digits with per-pixel labels: 11 classes (background + 10 digits).

    ``size`` is the canvas side (a multiple of 32); a canvas has ``(size // 32) ** 2`` cells and
    each cell holds a digit with probability ``fill`` (at least one per canvas), at a random
    offset. The digits of a ``"train"`` canvas come from the training split of
    :mod:`dynsweep.data.embedded`, those of a ``"val"`` canvas from its validation split, so no
    digit is in both.

    Labels: class ``1 + digit`` within ``radius`` pixels of the digit's stroke (its pixels of at
    least half intensity), ``ignore_index`` on the one-pixel band around that region (its
    boundary, as VOC ignores object boundaries), background (0) elsewhere. The region is the
    stroke grown by ``radius`` because a 2-pixel stroke is finer than the output stride of a
    dilated FCN (8): with ``radius=0`` an FCN learns to predict background everywhere.
    """

    num_classes = embedded.NUM_CLASSES + 1
    in_channels = 1

    def __init__(
        self,
        split: str = "train",
        size: int = 64,
        num_canvases: int | None = None,
        fill: float = 0.6,
        radius: int = 3,
        val_fraction: float = 0.1,
        seed: int = 0,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if size < CANVAS_CELL or size % CANVAS_CELL:
            raise ValueError(f"size must be a positive multiple of {CANVAS_CELL}, got {size}")
        if not 0 < fill <= 1:
            raise ValueError(f"fill must be in (0, 1], got {fill}")
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        num_canvases = num_canvases if num_canvases is not None else (2000 if split == "train" else 200)
        if num_canvases < 1:
            raise ValueError(f"num_canvases must be >= 1, got {num_canvases}")
        self.split, self.image_size = split, size
        indices = embedded.split_indices(split, val_fraction, seed)
        all_digits, all_labels = embedded.load_digits()
        digits, labels = all_digits[indices], all_labels[indices].numpy()
        # Each digit's labels on its window grown by pad on every side: region and boundary band.
        pad = radius + 1
        stroke = F.pad(digits >= 128, [pad] * 4)
        region = _dilate(stroke, radius).numpy()
        band = (_dilate(stroke, radius + 1) & ~_dilate(stroke, radius)).numpy()
        pixels = digits.numpy()

        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        cells, side = size // CANVAS_CELL, embedded.IMAGE_SIZE
        slack = CANVAS_CELL - side
        # Canvases with a margin of pad pixels, cropped at the end, so windows never leave them.
        canvases = np.zeros((num_canvases, size + 2 * pad, size + 2 * pad), np.uint8)
        masks = np.zeros_like(canvases)
        for n in range(num_canvases):
            occupied = rng.random(cells * cells) < fill
            occupied[rng.integers(cells * cells)] = True
            for cell in np.flatnonzero(occupied):
                k = rng.integers(len(labels))
                y = (cell // cells) * CANVAS_CELL + rng.integers(slack + 1)
                x = (cell % cells) * CANVAS_CELL + rng.integers(slack + 1)
                canvases[n, y + pad : y + pad + side, x + pad : x + pad + side] = pixels[k]
                window = masks[n, y : y + side + 2 * pad, x : x + side + 2 * pad]
                window[band[k] & (window == 0)] = ignore_index
                window[region[k]] = labels[k] + 1
        crop = np.s_[:, pad : pad + size, pad : pad + size]
        images = torch.from_numpy(canvases[crop].copy()).unsqueeze(1).float().div_(255)
        self.images = images.sub_(embedded.MEAN).div_(embedded.STD)
        self.masks = torch.from_numpy(masks[crop].copy()).long()

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.masks[index]


# ---------------------------------------------------------------------- joint transforms
def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


class SegmentationTransform:
    """Joint transform of a PIL image and its PIL label map into normalised tensors.

    ``label_map`` (a 256-entry lookup table) maps stored label values to class indices first.
    Training adds: a random scale in ``scale_range``, a random ``crop_size`` crop (padded with
    zeros and ignored pixels where the image is smaller) and a horizontal flip. A mask that is
    not a single-channel map of class indices (an RGB colour map, say) or that holds a value
    outside ``0 .. num_classes - 1`` and ``ignore_index`` is a DatasetFormatError.
    """

    def __init__(
        self,
        num_classes: int,
        train: bool,
        crop_size: int | Sequence[int] = 512,
        scale_range: tuple[float, float] = (0.5, 2.0),
        label_map: Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.num_classes, self.train, self.ignore_index = num_classes, train, ignore_index
        self.crop_size, self.scale_range = _pair(crop_size), tuple(scale_range)
        self.label_map = label_map
        self.crop = v2.RandomCrop(
            self.crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
        )
        self.flip = v2.RandomHorizontalFlip()
        self.mean, self.std = list(mean), list(std)

    def mask_tensor(self, target: Image.Image, source: str = "the label map") -> Tensor:
        """``uint8 [H, W]`` class indices of a PIL label map, checked."""
        values = np.asarray(target)
        if values.ndim != 2:
            raise DatasetFormatError(
                f"{source}: expected a single-channel map of label values, got an image of shape {values.shape}"
            )
        if values.dtype != np.uint8:
            if values.min() < 0 or values.max() > 255:
                raise DatasetFormatError(
                    f"{source}: label values must be in 0..255, got {values.min()}..{values.max()}"
                )
            values = values.astype(np.uint8)
        mask = torch.from_numpy(values.copy())
        if self.label_map is not None:
            mask = self.label_map[mask.long()]
        invalid = (mask >= self.num_classes) & (mask != self.ignore_index)
        if invalid.any():
            raise DatasetFormatError(
                f"{source}: holds label {int(mask[invalid][0])}, outside 0..{self.num_classes - 1} and "
                f"ignore_index {self.ignore_index}"
            )
        return mask

    def __call__(self, image: Image.Image, target: Image.Image, source: str = "the label map") -> tuple[Tensor, Tensor]:
        pixels = tv_tensors.Image(TF.pil_to_tensor(image))
        mask = tv_tensors.Mask(self.mask_tensor(target, source))
        if pixels.shape[-2:] != mask.shape[-2:]:
            raise DatasetFormatError(
                f"{source}: the label map is {tuple(mask.shape[-2:])} pixels, its image {tuple(pixels.shape[-2:])}"
            )
        if self.train:
            scale = float(torch.empty(()).uniform_(*self.scale_range))
            size = [max(1, round(s * scale)) for s in pixels.shape[-2:]]
            pixels = TF.resize(pixels, size, antialias=True)
            mask = TF.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST)
            pixels, mask = self.flip(*self.crop(pixels, mask))
        pixels = TF.normalize(TF.to_dtype(pixels, torch.float32, scale=True), self.mean, self.std)
        return pixels.as_subclass(Tensor), mask.as_subclass(Tensor).long()


class _Wrapped(Dataset):
    """A torchvision segmentation dataset whose items go through a SegmentationTransform,
    with unreadable files reported by path."""

    def __init__(self, dataset: Any, transform: SegmentationTransform, image_paths: list[str], mask_paths: list[str]):
        self.dataset, self.transform = dataset, transform
        self.image_paths, self.mask_paths = image_paths, mask_paths

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        try:
            image, target = self.dataset[index]
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise DatasetFormatError(
                f"{self.image_paths[index]!r} or its label map {self.mask_paths[index]!r} is not a readable "
                f"image ({type(error).__name__}: {error})"
            ) from error
        return self.transform(image, target, source=self.mask_paths[index])


# ---------------------------------------------------------------------- Cityscapes
CITYSCAPES_NUM_CLASSES = 19
CITYSCAPES_LAYOUT = (
    "the Cityscapes layout: <root>/leftImg8bit/{split}/<city>/<name>_leftImg8bit.png and "
    "<root>/gtFine/{split}/<city>/<name>_gtFine_labelIds.png"
)


def cityscapes_label_map(ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Lookup table from Cityscapes label ids (0..33) to the 19 training ids; the rest ignored."""
    table = torch.full((256,), ignore_index, dtype=torch.uint8)
    for cls in datasets.Cityscapes.classes:
        if cls.id >= 0 and 0 <= cls.train_id < CITYSCAPES_NUM_CLASSES:
            table[cls.id] = cls.train_id
    return table


def cityscapes_dataset(root: str | os.PathLike, split: str, transform: SegmentationTransform) -> Dataset:
    """torchvision's Cityscapes (fine, semantic) of ``root``, every label file checked to exist."""
    layout = CITYSCAPES_LAYOUT.format(split=split)
    root = require_dir(root, "Cityscapes root", layout)
    for folder in ("leftImg8bit", "gtFine"):
        require_dir(os.path.join(root, folder, split), f"Cityscapes root {root!r}", layout)
    dataset = datasets.Cityscapes(root, split=split, mode="fine", target_type="semantic")
    images = [path for path in dataset.images if path.endswith("_leftImg8bit.png")]
    if len(images) != len(dataset.images):
        stray = next(p for p in dataset.images if not p.endswith("_leftImg8bit.png"))
        raise DatasetFormatError(f"{stray!r} does not belong in {layout}")
    if not images:
        raise DatasetFormatError(f"{os.path.join(root, 'leftImg8bit', split)!r} holds no image; expected {layout}")
    masks = [targets[0] for targets in dataset.targets]
    missing = [path for path in masks if not os.path.isfile(path)]
    if missing:
        raise DatasetNotFoundError(
            f"{len(missing)} label maps are missing, the first is {missing[0]!r}; expected {layout}"
        )
    return _Wrapped(dataset, transform, dataset.images, masks)


# ---------------------------------------------------------------------- Pascal VOC
VOC_NUM_CLASSES = 21
VOC_LAYOUT = (
    "the VOC layout: <root>/VOCdevkit/VOC{year}/JPEGImages/<id>.jpg, SegmentationClass/<id>.png and "
    "ImageSets/Segmentation/{split}.txt"
)


def voc_dataset(
    root: str | os.PathLike, year: str, split: str, transform: SegmentationTransform, download: bool = False
) -> Dataset:
    """torchvision's VOCSegmentation of ``root``, every listed file checked to exist."""
    layout = VOC_LAYOUT.format(year=year, split=split)
    if not download:
        root = require_dir(root, "VOC root", layout + "; pass download=True to fetch it")
        base = os.path.join(root, "VOCdevkit", f"VOC{year}")
        require_dir(base, f"VOC root {root!r}", layout + "; pass download=True to fetch it")
        listing = os.path.join(base, "ImageSets", "Segmentation", f"{split}.txt")
        if not os.path.isfile(listing):
            raise DatasetNotFoundError(f"VOC root {root!r}: {listing!r} does not exist; expected {layout}")
    dataset = datasets.VOCSegmentation(os.fspath(root), year=year, image_set=split, download=download)
    for path in (*dataset.images, *dataset.masks):
        if not os.path.isfile(path):
            raise DatasetNotFoundError(f"{path!r} is listed in ImageSets/Segmentation/{split}.txt but does not exist")
    if not dataset.images:
        raise DatasetFormatError(f"ImageSets/Segmentation/{split}.txt under {os.fspath(root)!r} lists no image")
    return _Wrapped(dataset, transform, dataset.images, dataset.masks)
