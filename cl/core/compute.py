"""Compute and memory accounting per task.

Recorded per task in the tracker (``results.json`` → ``compute``):

- ``train_seconds``, ``eval_seconds``: wall time of training (hooks included) and
  of the evaluation row;
- ``train_examples``: training examples of the task; ``examples_seen`` (reported by
  training strategies): examples passed through an optimiser step, epochs included;
- ``backbone_forwards``: images the backbone actually encoded for feature
  extraction since the previous task finished (task 0 includes the zero-shot
  row); 0 when the cache answered;
- ``train_flops``: training compute counted with ``torch.utils.flop_counter``:
  for feature strategies ``flops_per_image × train_examples`` (embedding the
  task's data once); image strategies count their own (LoRA/CoDyRA: one
  forward+backward step × iterations). NEVIS'22 plots error against its
  cumulative sum;
- ``trainable_parameters``, ``memory_bytes`` (what the strategy carries to the
  next task), ``peak_memory_bytes`` (CUDA peak allocated on GPU; the process'
  peak resident set size on CPU, which never decreases).
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from cl.core.tracker import Tracker
    from cl.models.backbones import Backbone


def peak_rss_bytes() -> int:
    """Peak resident set size of this process, in bytes."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def flops_per_image(backbone: Backbone, image: torch.Tensor) -> int:
    """FLOPs of encoding one preprocessed image (C, H, W).

    A backbone whose cost is known without running it says so
    (:meth:`~cl.models.backbones.Backbone.analytic_flops`: ``pixels`` costs 0); other
    backbones are counted by ``torch.utils.flop_counter.FlopCounterMode``, imported only
    then (it pulls in ``torch._dynamo``, seconds of import).
    """
    known = backbone.analytic_flops(tuple(image.shape))
    if known is not None:
        return int(known)
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        backbone.encode_images(image.unsqueeze(0))
    return int(counter.get_total_flops())


class ComputeMeter:
    """Collects the per-task counters described in the module docstring."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.forwards = 0
        self._forwards_at_task_start = 0
        self.flops_per_image: int | None = None

    @contextlib.contextmanager
    def time(self, tracker: Tracker, t: int, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            tracker.add_compute(t, **{key: time.perf_counter() - start})

    @contextlib.contextmanager
    def peak(self, tracker: Tracker, t: int) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        yield
        peak = (torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda"
                else peak_rss_bytes())
        tracker.set_compute(t, peak_memory_bytes=peak)

    @contextlib.contextmanager
    def count_backbone(self, backbone: Backbone) -> Iterator[None]:
        """Count images passed to ``backbone.encode_images`` inside the block."""
        original = backbone.encode_images

        def counted(batch: torch.Tensor) -> torch.Tensor:
            self.forwards += int(batch.shape[0])
            return original(batch)

        backbone.encode_images = counted  # type: ignore[method-assign]
        try:
            yield
        finally:
            del backbone.encode_images

    def measure_flops(self, backbone: Backbone, image: torch.Tensor) -> None:
        """Count the FLOPs of one image forward once per run (``image``: (C, H, W))."""
        if self.flops_per_image is None:
            self.flops_per_image = flops_per_image(backbone, image)

    def finish_task(self, tracker: Tracker, t: int, strategy: Any, backbone: Backbone,
                    n_train: int) -> None:
        """Record the end-of-task counters of task ``t``.

        Feature strategies are charged one backbone forward per training example;
        image strategies report their own ``train_flops`` (forward+backward steps).
        """
        nominal = (self.flops_per_image or 0) * n_train if strategy.inputs == "features" else 0
        tracker.add_compute(t, train_flops=nominal,
                            backbone_forwards=self.forwards - self._forwards_at_task_start)
        tracker.set_compute(t, trainable_parameters=strategy.trainable_parameters(),
                            memory_bytes=strategy.memory_bytes())
        self._forwards_at_task_start = self.forwards
