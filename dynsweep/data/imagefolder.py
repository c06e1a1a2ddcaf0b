"""Image folders in the ImageNet layout, read by torchvision's ``ImageFolder``.

``root/train/<class>/<image>`` and ``root/val/<class>/<image>``: one folder per class, the same
class folders in both splits (a class is its folder's index in sorted order, so differing
folders would silently give the two splits different labels: that is an error here). The
transforms are the standard ImageNet ones: random resized crop and flip for training, resize
to 256 and centre crop 224 for evaluation (the DyNet paper's "center-crop evaluation").
"""

from __future__ import annotations

import os

import torch
from PIL import Image, UnidentifiedImageError
from torchvision import datasets
from torchvision.transforms import v2

from dynsweep.data.errors import DatasetFormatError, require_dir

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUT = "the ImageNet layout: <root>/{split}/<class>/<image>, one folder per class"


def imagenet_transforms(train: bool, image_size: int = 224, resize_size: int = 256) -> v2.Compose:
    """torchvision's ImageNet recipe: RandomResizedCrop + flip, or Resize + CenterCrop; normalise."""
    if train:
        geometry = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        geometry = [v2.Resize(resize_size, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose(
        [
            v2.ToImage(),
            *geometry,
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def load_rgb(path: str) -> Image.Image:
    """Open an image as RGB; a file that is not an image is a DatasetFormatError naming it."""
    try:
        with open(path, "rb") as file:
            return Image.open(file).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetFormatError(f"{path!r} is not a readable image ({type(error).__name__}: {error})") from error


def class_folders(folder: str) -> list[str]:
    """The sorted class folder names of ``folder`` (torchvision's rule), without opening an image."""
    try:
        classes, _ = datasets.folder.find_classes(folder)
    except FileNotFoundError as error:
        raise DatasetFormatError(
            f"{folder!r} holds no class folder; expected {LAYOUT.format(split=os.path.basename(folder))}"
        ) from error
    return classes


def image_folder(
    root: str | os.PathLike, split: str = "train", transform: v2.Transform | None = None
) -> datasets.ImageFolder:
    """torchvision's ImageFolder of ``root/split``, with errors that name the folder and the layout."""
    root = require_dir(root, "image folder root", LAYOUT.format(split=split))
    folder = require_dir(os.path.join(root, split), f"image folder root {root!r}", LAYOUT.format(split=split))
    try:
        return datasets.ImageFolder(folder, transform=transform, loader=load_rgb)
    except FileNotFoundError as error:  # no class folder, or no image with a known extension
        raise DatasetFormatError(f"{folder!r} is not in {LAYOUT.format(split=split)}: {error}") from error


def check_same_classes(train: datasets.ImageFolder, val: datasets.ImageFolder) -> None:
    """Both splits must have the same class folders, or their label indices disagree."""
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))
        only_val = sorted(set(val.classes) - set(train.classes))
        raise DatasetFormatError(
            f"{train.root!r} and {val.root!r} have different class folders "
            f"(only in train: {only_train[:5]}, only in val: {only_val[:5]}); "
            "labels are folder indices, so both splits need the same folders"
        )
