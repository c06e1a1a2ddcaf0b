"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) from a local root in torchvision's format.

``root`` holds ``cifar-10-batches-py/`` (``data_batch_1`` to ``data_batch_5``, ``test_batch``,
``batches.meta``) or ``cifar-100-python/`` (``train``, ``test``, ``meta``): the pickled batches
of the official archives, which torchvision's ``CIFAR10`` / ``CIFAR100`` read. Nothing is
downloaded unless ``download=True``.

torchvision checks the MD5 of every file before it reads them; we check only that they are
there (``verify_checksums=True`` restores the check, at about a second per load), and turn a
file that does not unpickle into the CIFAR layout into a :class:`DatasetFormatError` that names
it. The test split serves as the validation set, as usual for CIFAR.
"""

from __future__ import annotations

import os
import pickle
from typing import Literal

import torch
from torchvision import datasets
from torchvision.transforms import v2

from dynsweep.data.errors import DatasetFormatError, DatasetNotFoundError, require_dir, require_files

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


def _presence_only(base: type[datasets.CIFAR10]) -> type[datasets.CIFAR10]:
    """``base`` with every file's MD5 dropped: torchvision's integrity check becomes a presence check."""
    return type(
        f"{base.__name__}Files",
        (base,),
        {
            "train_list": [[name, None] for name, _ in base.train_list],
            "test_list": [[name, None] for name, _ in base.test_list],
            "meta": {**base.meta, "md5": None},
        },
    )


_CLASSES = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}
_UNCHECKED = {name: _presence_only(cls) for name, cls in _CLASSES.items()}


def cifar_transforms(name: str, train: bool) -> v2.Compose:
    """Training: random crop 32 with 4 pixels of padding and horizontal flip; both: normalise."""
    mean, std = CIFAR_STATS[name]
    augment = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if train else []
    return v2.Compose([*augment, v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def cifar_dataset(
    root: str | os.PathLike,
    name: Literal["cifar10", "cifar100"] = "cifar10",
    train: bool = True,
    download: bool = False,
    transform: v2.Transform | None = None,
    verify_checksums: bool = False,
) -> datasets.CIFAR10:
    """torchvision's CIFAR-10/100 dataset of ``root``, with errors that name the files."""
    if name not in _CLASSES:
        raise ValueError(f"name must be one of {sorted(_CLASSES)}, got {name!r}")
    cls = (_CLASSES if verify_checksums else _UNCHECKED)[name]
    folder = os.path.join(os.fspath(root), cls.base_folder)
    layout = f"the folder {cls.base_folder!r} of the official {name} python archive (torchvision's format)"
    if download:
        os.makedirs(root, exist_ok=True)
    else:
        require_dir(root, f"{name} root", f"a directory holding {layout}; pass download=True to fetch it")
        require_dir(folder, f"{name} root {os.fspath(root)!r}", f"{layout}; pass download=True to fetch it")
        files = [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        require_files(folder, files, name, "pass download=True to fetch the archive")
    try:
        dataset = cls(os.fspath(root), train=train, transform=transform, download=download)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted" (MD5 mismatch)
        raise DatasetNotFoundError(f"{name} in {folder!r}: {error}") from error
    except (
        pickle.UnpicklingError,
        EOFError,
        KeyError,
        ValueError,
        TypeError,
        AttributeError,
        UnicodeDecodeError,
    ) as error:
        raise DatasetFormatError(
            f"{name} in {folder!r} is not in the CIFAR python format: expected pickled dicts with 'data' "
            f"(uint8 rows of 3 x 32 x 32 pixels) and '{'labels' if name == 'cifar10' else 'fine_labels'}', "
            f"and a meta file with the class names ({type(error).__name__}: {error})"
        ) from error
    if len(dataset.data) != len(dataset.targets):
        raise DatasetFormatError(f"{name} in {folder!r}: {len(dataset.data)} images but {len(dataset.targets)} labels")
    bad = [t for t in dataset.targets if not 0 <= t < NUM_CLASSES[name]]
    if bad:
        raise DatasetFormatError(f"{name} in {folder!r}: label {bad[0]} is outside 0..{NUM_CLASSES[name] - 1}")
    return dataset
