"""Glyphs: a generated image set (nothing downloaded) whose difficulty is set by its parameters.

Each class is a glyph: a polyline through ``points`` random control points in the unit square,
drawn once from ``seed``. Each image draws its class's glyph (with the distortions of a
:class:`GlyphStyle`) with the control points jittered by
``jitter`` (a fraction of the side), under a random affine map (rotation up to ``rotation``
degrees, scale in ``1 +- scale``, shear up to ``shear``, shift up to ``translate`` of the side),
with a stroke width of ``stroke_width`` pixels times a random factor in ``1 +- width_jitter``, ``clutter`` distractor strokes at random
places, and Gaussian pixel noise of standard deviation ``noise``. Larger values make a harder set;
``jitter=rotation=scale=shear=translate=width_jitter=clutter=noise=0`` gives one image per class.

The split is fixed: training and validation images come from two separate seeded streams, so
the validation images are the same whatever ``train_per_class`` is, and every process renders the
same pixels (NumPy's seeded generator, float32 arithmetic). Images are normalised with the mean
and standard deviation of the training split.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dynsweep.data.crops import PaddedImages

CHUNK = 256
"""Images rendered per vectorised step (bounds the memory of the distance computation)."""


def _check(name: str, value: float, low: float = 0.0, high: float = math.inf) -> None:
    if isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


def class_glyphs(num_classes: int, points: int, seed: int) -> np.ndarray:
    """Each class's control points ``[num_classes, points, 2]`` in [0.15, 0.85]^2 (seeded)."""
    rng = np.random.default_rng([seed, 0])
    return rng.uniform(0.15, 0.85, size=(num_classes, points, 2)).astype(np.float32)


def _segments_to_image(segments: np.ndarray, widths: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased strokes: ``segments [B, S, 2, 2]`` (unit coordinates), ``widths [B, S]`` in
    pixels -> ``[B, size, size]`` in [0, 1] (the brightest stroke at each pixel)."""
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    grid = np.stack(np.meshgrid(centres, centres, indexing="xy"), -1).reshape(1, 1, -1, 2)  # x, y
    a, b = segments[:, :, None, 0], segments[:, :, None, 1]  # [B, S, 1, 2]
    ab = b - a
    t = ((grid - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-8)
    nearest = a + np.clip(t, 0, 1)[..., None] * ab
    distance = np.sqrt(((grid - nearest) ** 2).sum(-1)) * size  # pixels, [B, S, P]
    ink = np.clip(widths[..., None] / 2 + 0.5 - distance, 0, 1)
    return ink.max(1).reshape(-1, size, size)


@dataclass(frozen=True)
class GlyphStyle:
    """How far each image departs from its class's glyph (see the module); larger is harder."""

    jitter: float = 0.05
    rotation: float = 30.0
    scale: float = 0.15
    shear: float = 0.2
    translate: float = 0.1
    stroke_width: float = 2.0
    width_jitter: float = 0.25
    clutter: int = 3
    noise: float = 0.2

    @classmethod
    def of(cls, style: GlyphStyle | Mapping[str, Any] | None) -> GlyphStyle:
        """A style from itself, a mapping of its fields (a spec's ``style:``), or None (the default)."""
        if isinstance(style, GlyphStyle):
            return style
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(style or {}) - fields)
        if unknown:
            raise ValueError(f"style: unknown fields {unknown}; allowed: {', '.join(sorted(fields))}")
        return cls(**(style or {}))

    def check(self, size: int) -> None:
        """Raise a ValueError naming the first field out of its range."""
        for name, high in (
            ("jitter", 0.5),
            ("rotation", 180),
            ("scale", 0.9),
            ("shear", 1),
            ("translate", 0.5),
            ("width_jitter", 0.9),
            ("clutter", 100),
            ("noise", 1),
        ):
            _check(name, getattr(self, name), 0, high)
        _check("stroke_width", self.stroke_width, 0.5, size / 2)


def render(
    labels: np.ndarray,
    glyphs: np.ndarray,
    rng: np.random.Generator,
    size: int,
    style: GlyphStyle,
) -> np.ndarray:
    """Images ``float32 [len(labels), size, size]`` in [0, 1] of the given classes (see the module)."""
    jitter, rotation, scale, shear, translate = style.jitter, style.rotation, style.scale, style.shear, style.translate
    stroke_width, width_jitter, clutter, noise = style.stroke_width, style.width_jitter, int(style.clutter), style.noise
    n, points = len(labels), glyphs.shape[1]
    control = glyphs[labels] + rng.normal(0, jitter, size=(n, points, 2)).astype(np.float32)
    angle = np.deg2rad(rng.uniform(-rotation, rotation, n))
    zoom = rng.uniform(1 - scale, 1 + scale, n)
    skew = rng.uniform(-shear, shear, n)
    shift = rng.uniform(-translate, translate, (n, 2))
    cos, sin = np.cos(angle), np.sin(angle)
    # rotation x shear x zoom, about the image centre
    matrix = np.stack([np.stack([cos, cos * skew - sin], -1), np.stack([sin, sin * skew + cos], -1)], 1)
    matrix = (matrix * zoom[:, None, None]).astype(np.float32)
    control = np.einsum("nij,npj->npi", matrix, control - 0.5) + 0.5 + shift[:, None].astype(np.float32)
    segments = np.stack([control[:, :-1], control[:, 1:]], 2)  # [n, points - 1, 2, 2]
    if clutter:
        start = rng.uniform(0, 1, (n, clutter, 2))
        length, direction = rng.uniform(0.1, 0.35, (n, clutter)), rng.uniform(0, 2 * np.pi, (n, clutter))
        end = start + length[..., None] * np.stack([np.cos(direction), np.sin(direction)], -1)
        segments = np.concatenate([segments, np.stack([start, end], 2).astype(np.float32)], 1)
    widths = (
        stroke_width * rng.uniform(1 - width_jitter, 1 + width_jitter, (n, 1)) * np.ones((1, segments.shape[1]))
    ).astype(np.float32)
    images = np.concatenate(
        [_segments_to_image(segments[i : i + CHUNK], widths[i : i + CHUNK], size) for i in range(0, n, CHUNK)]
    )
    if noise:
        images = images + rng.normal(0, noise, images.shape).astype(np.float32)
    return np.clip(images, 0, 1).astype(np.float32)


@functools.cache
def _split(
    split: str, count: int, num_classes: int, seed: int, points: int, size: int, style: GlyphStyle
) -> tuple[Tensor, Tensor]:
    """``count`` images per class of one split (float [N, H, W] in [0, 1], labels), cached."""
    rng = np.random.default_rng([seed, 1 if split == "train" else 2])
    labels = rng.permutation(np.repeat(np.arange(num_classes), count))
    images = render(labels, class_glyphs(num_classes, points, seed), rng, size, style)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


class Glyphs(PaddedImages):
    """One split of the generated glyphs: ``(image float32 [1, size, size] normalised, label int64)``.

    ``train_per_class`` / ``val_per_class`` images of each of ``num_classes`` classes; ``style``
    (a :class:`GlyphStyle` or a mapping of its fields) sets the difficulty. ``augment`` (default: on for ``"train"``) crops
    a random window of the image padded by ``padding`` pixels.
    """

    in_channels = 1

    def __init__(
        self,
        split: str = "train",
        num_classes: int = 10,
        train_per_class: int = 200,
        val_per_class: int = 100,
        size: int = 28,
        points: int = 5,
        style: GlyphStyle | Mapping[str, Any] | None = None,
        seed: int = 0,
        augment: bool | None = None,
        padding: int = 2,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        for name, value, low in (
            ("num_classes", num_classes, 2),
            ("train_per_class", train_per_class, 1),
            ("val_per_class", val_per_class, 1),
            ("size", size, 8),
            ("points", points, 2),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.style = GlyphStyle.of(style)
        self.style.check(size)
        _check("padding", padding, 0, size)
        self.split, self.num_classes, self.image_size = split, num_classes, size
        self.augment = split == "train" if augment is None else augment
        self.padding = padding if self.augment else 0
        settings = (seed, points, size, self.style)
        count = train_per_class if split == "train" else val_per_class
        pixels, self.labels = _split(split, count, num_classes, *settings)
        # Normalised by the training split's statistics (those of 200 images a class at most).
        reference, _ = _split("train", min(train_per_class, 200), num_classes, *settings)
        self.mean, self.std = float(reference.mean()), float(reference.std())
        pixels = torch.nn.functional.pad(pixels.unsqueeze(1), [self.padding] * 4)
        self.images = (pixels - self.mean) / self.std
