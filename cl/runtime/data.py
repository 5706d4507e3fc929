"""Dataset helpers shared by feature extraction and image-training strategies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler


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
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable[[Any], torch.Tensor],
        label_offset: int = 0,
        n_classes: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.label_offset = label_offset
        self.n_classes = n_classes

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        label = int(label)
        if self.n_classes is not None and not 0 <= label < self.n_classes:
            raise ValueError(
                f"item {index} has label {label}, outside the task's {self.n_classes} classes; "
                "the dataset's labels do not match the task's class names."
            )
        return self.transform(image), label + self.label_offset


def loader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    shard: bool = False,
) -> DataLoader:
    """A ``DataLoader`` with the library's defaults (seeded shuffling, pinned memory on GPU).

    Without ``generator`` a fixed private one is used: a ``DataLoader`` draws a base
    seed from its generator on every iteration, and drawing it from torch's global
    RNG would make later random draws depend on whether, say, the feature cache
    was warm.

    With ``shard=True`` in a multi-process run, every rank draws the same global
    batches and loads only its share of each (:class:`cl.runtime.distributed.ShardedBatchSampler`).
    """
    from cl.runtime import distributed
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    if shard and distributed.world_size() > 1:
        sampler = (RandomSampler(dataset, generator=generator) if shuffle  # type: ignore[arg-type]
                   else SequentialSampler(dataset))  # type: ignore[arg-type]
        batches = distributed.ShardedBatchSampler(BatchSampler(sampler, batch_size, drop_last))
        return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                          generator=generator, pin_memory=torch.cuda.is_available())
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )
