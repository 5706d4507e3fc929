"""In-memory image datasets built from numpy arrays."""

from __future__ import annotations

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from streams.core import integer_labels


class ArrayImageDataset(Dataset):
    """Images held as a uint8 array, served as PIL images with integer labels.

    Parameters
    ----------
    images : np.ndarray, shape (N, H, W) or (N, H, W, 3), uint8
    labels : np.ndarray, shape (N,), int
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if images.dtype != np.uint8:
            raise TypeError(f"images must be uint8, got {images.dtype}.")
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
            raise ValueError(f"images must have shape (N, H, W) or (N, H, W, 3), got {images.shape}.")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels.")
        self.images = images
        self.labels = integer_labels(labels, "ArrayImageDataset")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), int(self.labels[index])


__all__ = ["ArrayImageDataset"]
