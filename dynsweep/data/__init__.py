"""Data: the embedded digits and generated glyphs (no download), CIFAR, ImageNet-style folders,
and segmentation sets.

One module per source (``embedded``, ``glyphs``, ``cifar``, ``imagefolder``, ``segmentation``),
each giving torch Datasets; ``datamodules`` wraps them as LightningDataModules. This package imports
nothing from :mod:`dynsweep.tasks` or :mod:`dynsweep.models`.

>>> from dynsweep.data import EmbeddedDigitsDataModule
>>> dm = EmbeddedDigitsDataModule(batch_size=64)      # 4,500 / 500 real MNIST digits, in memory
"""

from dynsweep.data.datamodules import (
    CIFARDataModule,
    CityscapesDataModule,
    DigitCanvasDataModule,
    EmbeddedDigitsDataModule,
    GlyphsDataModule,
    ImageFolderDataModule,
    VOCDataModule,
)
from dynsweep.data.embedded import EmbeddedDigits, load_digits
from dynsweep.data.errors import DatasetFormatError, DatasetNotFoundError
from dynsweep.data.glyphs import Glyphs
from dynsweep.data.segmentation import DigitCanvases, SegmentationTransform

__all__ = [
    "CIFARDataModule",
    "CityscapesDataModule",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DigitCanvasDataModule",
    "DigitCanvases",
    "EmbeddedDigits",
    "EmbeddedDigitsDataModule",
    "Glyphs",
    "GlyphsDataModule",
    "ImageFolderDataModule",
    "SegmentationTransform",
    "VOCDataModule",
    "load_digits",
]
