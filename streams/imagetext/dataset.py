"""The image-text dataset type: images with one or more captions, and a flat caption index.

Item ``i`` is ``(image, captions)``: a PIL RGB image (or its transform) and the
list of its captions. Retrieval metrics need every caption numbered once: the
*flat caption index* numbers captions image by image (image 0's captions first),
and :attr:`ImageTextDataset.caption_to_image` maps each caption back to its
image (see :func:`cl.core.retrieval.image_text_recall`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

ImageSource = Path | bytes


@dataclass(frozen=True, eq=False)
class ImageTextDataset(Dataset):
    """Images, each with one or more captions.

    Parameters
    ----------
    images : sequence of Path or bytes, length N
        An image file, or an encoded image (PNG, JPEG...) held in memory.
    captions : sequence of sequence of str, length N
        The captions of each image, at least one each.
    ids : sequence of str, length N, optional
        Stable item ids (file path, COCO image id, P9D item id); defaults to
        ``"0" .. "N-1"``. Must be unique.
    categories : sequence of str, length N, optional
        Category of each image, where the data has one (P9D ``cate_name``);
        needed for :func:`cl.core.retrieval.multimodal_map_at_k`.
    transform : callable, optional
        Applied to each PIL image (e.g. the backbone's ``preprocess``).

    Raises
    ------
    ValueError
        Lengths disagree, an image has no caption, a caption is empty, or ids repeat.
    """

    images: tuple[ImageSource, ...]
    captions: tuple[tuple[str, ...], ...]
    ids: tuple[str, ...] = ()
    categories: tuple[str, ...] | None = None
    transform: Callable[[Image.Image], Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        images = tuple(x if isinstance(x, bytes) else Path(x) for x in self.images)
        captions = tuple(tuple(c) if not isinstance(c, str) else (c,) for c in self.captions)
        ids = tuple(str(i) for i in self.ids) or tuple(str(i) for i in range(len(images)))
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "captions", captions)
        object.__setattr__(self, "ids", ids)
        if self.categories is not None:
            object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))
        n = len(images)
        lengths = {"captions": len(captions), "ids": len(ids)}
        if self.categories is not None:
            lengths["categories"] = len(self.categories)
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise ValueError(f"{n} images but {bad}; give one entry per image.")
        for i, caps in enumerate(captions):
            if not caps:
                raise ValueError(f"image {ids[i]!r} has no caption; drop it or add one.")
            if any(not isinstance(c, str) or not c.strip() for c in caps):
                raise ValueError(f"image {ids[i]!r} has an empty or non-string caption: {caps!r}.")
        if len(set(ids)) != n:
            dupes = sorted({x for x in ids if ids.count(x) > 1})[:5]
            raise ValueError(f"item ids must be unique; repeated: {dupes}.")

    def __len__(self) -> int:
        """Number of images N."""
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, list[str]]:
        """``(image, captions)`` of image ``index``: the transformed RGB image and its captions."""
        source = self.images[index]
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            image = img.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, list(self.captions[index])

    @cached_property
    def caption_list(self) -> tuple[str, ...]:
        """All captions in flat-index order, length N_captions."""
        return tuple(c for caps in self.captions for c in caps)

    @cached_property
    def caption_to_image(self) -> np.ndarray:
        """Image index of each caption, int64 array of shape (N_captions,)."""
        return np.repeat(np.arange(len(self.captions)), [len(c) for c in self.captions])

    @property
    def n_captions(self) -> int:
        """Number of captions N_captions."""
        return len(self.caption_list)

    def subset(self, indices: Sequence[int]) -> ImageTextDataset:
        """The dataset of images ``indices`` (in that order), with their captions and ids."""
        idx = [int(i) for i in indices]
        n = len(self)
        out_of_range = [i for i in idx if not 0 <= i < n]
        if out_of_range:
            raise IndexError(f"indices {out_of_range[:5]} are outside [0, {n}).")
        return ImageTextDataset(
            images=tuple(self.images[i] for i in idx),
            captions=tuple(self.captions[i] for i in idx),
            ids=tuple(self.ids[i] for i in idx),
            categories=None if self.categories is None else tuple(self.categories[i] for i in idx),
            transform=self.transform,
        )

    def with_transform(self, transform: Callable[[Image.Image], Any] | None) -> ImageTextDataset:
        """The same data with another image ``transform``."""
        return ImageTextDataset(self.images, self.captions, self.ids, self.categories, transform)


def collate_pairs(batch: Sequence[tuple[Any, list[str]]]) -> tuple[Any, list[list[str]]]:
    """``DataLoader`` collate function for ``(image, captions)`` items.

    Images that are tensors (transformed, same shape) are stacked into (B, ...);
    others are returned as a list. Captions stay one list per image (torch's
    default collate would transpose them, and fails when images have different
    numbers of captions).
    """
    images = [item[0] for item in batch]
    captions = [list(item[1]) for item in batch]
    if images and all(isinstance(x, torch.Tensor) for x in images):
        return torch.stack(images), captions
    return images, captions


__all__ = ["ImageTextDataset", "collate_pairs"]
