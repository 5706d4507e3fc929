"""``er-contrastive``: contrastive fine-tuning with experience replay of stored image-text pairs.

After each task its pairs are offered, in order, to a memory of at most
``memory`` pairs filled by reservoir sampling (Vitter 1985, Algorithm R): the
``n``-th pair seen (0-based) takes a free slot while there is one, else replaces
slot ``j`` drawn uniformly from ``0..n`` when ``j < memory``. From the next task
on, the stored pairs are trained on together with the task's own pairs, shuffled
into the same batches (experience replay, Chaudhry et al. 2019). This is CTP's
``ER`` baseline (KevinLight831/CTP ``train/train_ER.py``, ``exemplar`` with
``buffer = 'ER'``, ``episodic_mem_size = 10000``).

The memory holds references (task index, pair index) and reloads the pairs from
their tasks' train splits; :meth:`ERContrastive.memory_bytes` counts the stored
pairs' encoded images and captions, what a deployment keeps.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from cl.core.strategy import Context, TaskData
from strategies.imagetext.base import ContrastiveFinetune
from strategies.imagetext.options import ERContrastiveOptions
from streams.imagetext.dataset import ImageTextDataset

__all__ = ["ERContrastive"]


class ERContrastive(ContrastiveFinetune):
    """Contrastive fine-tuning with a reservoir memory of image-text pairs replayed in every batch.

    Parameters
    ----------
    options : ERContrastiveOptions, optional
    **overrides
        Fields of :class:`~strategies.imagetext.options.ERContrastiveOptions`.

    Attributes
    ----------
    memory_ : list of (int, int)
        Stored pairs as (task index, pair index in the task's train split).
    seen_ : int
        Pairs offered to the memory so far.
    """

    label = "er-contrastive"
    options_class = ERContrastiveOptions

    def __init__(self, options: ERContrastiveOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        self.memory_: list[tuple[int, int]] = []
        self.seen_ = 0
        self._bytes = 0

    def _parts(self, data: TaskData, ctx: Context) -> list[ImageTextDataset]:
        by_task: dict[int, list[int]] = defaultdict(list)
        for task, index in self.memory_:
            by_task[task].append(index)
        parts = [data.dataset]
        for task in sorted(by_task):
            stored = ctx.stream[task].load_train()
            parts.append(stored.subset(by_task[task]).with_transform(data.dataset.transform))
        ctx.record("replayed_pairs", len(self.memory_))
        return parts

    def _end_task(self, ctx: Context) -> None:
        """Offer the task's pairs to the reservoir (CTP's ``exemplar``, ``buffer = 'ER'``)."""
        n = len(ctx.task.load_train())
        for index in range(n):
            if len(self.memory_) < self.options.memory:
                self.memory_.append((ctx.task_index, index))
            else:
                j = int(torch.randint(0, self.seen_ + 1, (1,), generator=ctx.generator))
                if j < self.options.memory:
                    self.memory_[j] = (ctx.task_index, index)
            self.seen_ += 1
        self._bytes = self._stored_bytes(ctx)
        ctx.record("memory_pairs", len(self.memory_))

    def _stored_bytes(self, ctx: Context) -> int:
        """Encoded image bytes (file sizes) plus UTF-8 caption bytes of the stored pairs."""
        by_task: dict[int, list[int]] = defaultdict(list)
        for task, index in self.memory_:
            by_task[task].append(index)
        total = 0
        for task, indices in by_task.items():
            data = ctx.stream[task].load_train()
            for i in indices:
                image = data.images[i]
                total += len(image) if isinstance(image, bytes) else Path(image).stat().st_size
                total += sum(len(c.encode()) for c in data.captions[i])
        return total

    def memory_bytes(self) -> int:
        return self._bytes

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if state:
            state.update(memory=[list(p) for p in self.memory_], seen=self.seen_,
                         memory_bytes=self._bytes)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.memory_ = [(int(t), int(i)) for t, i in state.get("memory", [])]
        self.seen_ = int(state.get("seen", 0))
        self._bytes = int(state.get("memory_bytes", 0))
