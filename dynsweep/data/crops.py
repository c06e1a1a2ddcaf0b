"""In-memory image sets augmented by random crops of their padded images (the CIFAR recipe)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset


class PaddedImages(Dataset):
    """Images stored padded by ``padding`` pixels a side: each item is a random ``image_size``
    window of one (a shift of up to ``padding`` pixels), or the image itself when ``padding`` is 0."""

    images: Tensor  # [N, C, image_size + 2 * padding, ...], normalised
    labels: Tensor
    padding: int
    image_size: int

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index]
        if self.padding:
            dy, dx = torch.randint(0, 2 * self.padding + 1, (2,)).tolist()
            image = image[:, dy : dy + self.image_size, dx : dx + self.image_size]
        return image, self.labels[index]
