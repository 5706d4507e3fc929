"""Dataset helpers shared by feature extraction and image-training strategies.

Public for strategies (docs/own_strategies.md): :func:`loader`, the ``DataLoader`` a
strategy that trains on ``TaskData.dataset`` should use (seeded shuffling from
``ctx.generator``, batches whose images share one shape, DDP sharding on request).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    default_collate,
)

from streams.core import integer_label

#: What a dataset may yield as an image, for the backbone's preprocessing.
IMAGE_TYPES: tuple[type, ...] = (Image.Image, np.ndarray, torch.Tensor)


class Preprocessed(Dataset):
    """View of a task dataset with a transform applied and labels shifted to global ids.

    Parameters
    ----------
    dataset : Dataset
        Yields ``(image, local_label)``.
    transform : callable
        Backbone preprocessing, image → tensor (C, H, W).
    label_offset : int
        Added to every local label (``stream.class_offsets[t]``), so items are
        ``(tensor, global_class_id)``.
    n_classes : int or None
        When given, a local label outside ``[0, n_classes)`` raises ``ValueError``.
    where : str
        What the dataset is (``"task 'x' [train]"``), for messages.

    Items that are not ``(image, integer label)`` pairs, with the image a PIL
    image, numpy array or tensor, raise ``ValueError`` naming the item.
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable[[Any], torch.Tensor],
        label_offset: int = 0,
        n_classes: int | None = None,
        where: str = "dataset",
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.label_offset = label_offset
        self.n_classes = n_classes
        self.where = where

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError(f"{self.where}: item {index} is a {type(item).__name__}, not an "
                             "(image, label) pair.")
        image, label = item[0], integer_label(item[1], f"{self.where}: item {index}")
        if self.n_classes is not None and not 0 <= label < self.n_classes:
            raise ValueError(
                f"{self.where}: item {index} has label {label}, outside the task's "
                f"{self.n_classes} classes; the dataset's labels do not match the task's class names."
            )
        if not isinstance(image, IMAGE_TYPES):
            raise ValueError(  # noqa: TRY004 - bad data, reported like bad labels
                f"{self.where}: item {index} holds a {type(image).__name__} ({image!r:.40}) where "
                "an image belongs; datasets must yield (image, label) with a PIL image, a numpy "
                "array or a tensor."
            )
        return self.transform(image), label + self.label_offset


def collate(batch: Sequence[Any]) -> Any:
    """``default_collate``, after checking that the images of a batch share one shape.

    Raises
    ------
    ValueError
        Two preprocessed images differ in shape (sizes or colour modes differ); both
        shapes are named.
    """
    if batch and isinstance(batch[0], (tuple, list)) and isinstance(batch[0][0], torch.Tensor):
        first = tuple(batch[0][0].shape)
        for item in batch[1:]:
            if tuple(item[0].shape) != first:
                raise ValueError(
                    f"images of one batch have different shapes after preprocessing, {first} and "
                    f"{tuple(item[0].shape)}: their sizes or colour modes differ. Use a backbone "
                    "that resizes (with 'pixels', 'pixels:SIZE' resizes every image to SIZE×SIZE "
                    "grey), or make the images uniform."
                )
    return default_collate(batch)


def loader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    shard: bool = False,
    persistent: bool = False,
) -> DataLoader:
    """A ``DataLoader`` with the library's defaults (seeded shuffling, pinned memory on GPU,
    :func:`cl.runtime.accel.loader_options`).

    With ``persistent=True`` (a loader iterated once per epoch) its worker processes are
    kept between epochs instead of being started again.

    Without ``generator`` a fixed private one is used: a ``DataLoader`` draws a base
    seed from its generator on every iteration, and drawing it from torch's global
    RNG would make later random draws depend on whether, say, the feature cache
    was warm.

    With ``shard=True`` in a multi-process run, every rank draws the same global
    batches and loads only its share of each (:class:`cl.runtime.distributed.ShardedBatchSampler`).
    """
    from cl.runtime import distributed
    from cl.runtime.accel import loader_options

    options = loader_options(num_workers, persistent=persistent)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    if shard and distributed.world_size() > 1:
        sampler = (RandomSampler(dataset, generator=generator) if shuffle  # type: ignore[arg-type]
                   else SequentialSampler(dataset))  # type: ignore[arg-type]
        batches = distributed.ShardedBatchSampler(BatchSampler(sampler, batch_size, drop_last))
        return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                          generator=generator, collate_fn=collate, **options)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
        drop_last=drop_last,
        collate_fn=collate,
        **options,
    )


__all__ = ["IMAGE_TYPES", "Preprocessed", "collate", "loader"]
