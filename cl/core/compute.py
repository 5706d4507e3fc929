"""Compute and memory accounting per task.

Recorded per task in the tracker (``results.json`` → ``compute``):

- ``train_seconds``, ``eval_seconds``: wall time of training (hooks included) and
  of the evaluation row, *without* feature extraction;
- ``extract_seconds``: wall time of feature extraction (encoding a split with the
  backbone, or reading it from the feature cache) during the task's training and
  evaluation; task 0 includes the zero-shot row. A warm cache makes it small, so
  it is kept apart from ``train_seconds``: a strategy's training time does not
  depend on whether another run encoded the stream first;
- ``train_examples``: training examples of the task; ``examples_seen`` (reported by
  training strategies): examples passed through an optimiser step, epochs included;
- ``backbone_forwards``: images the backbone actually encoded for feature
  extraction since the previous task finished (task 0 includes the zero-shot
  row); 0 when the cache answered;
- ``train_flops``: training compute, counted with ``torch.utils.flop_counter``
  (matrix products, convolutions, attention; forward and backward):

  * feature strategies are charged ``flops_per_image × train_examples`` (embedding
    the task's data once; ``pixels`` costs 0, known without counting);
  * strategies that train (on images, or holding ``torch.nn.Module`` s or
    optimisers, user strategies included) are counted by the runner with no code
    on their side (:class:`SampledFlopCounter`): their ``train_task`` runs under a
    FLOP counter until its second optimiser step, and each later step is charged
    the FLOPs of the second; a strategy that never calls ``torch.optim`` is counted
    in full;
  * a strategy that counts its own sets ``counts_flops = True`` and calls
    ``ctx.count("train_flops", n)`` (the adapting and image-text bases count their
    first steps the same way);

  NEVIS'22 plots error against the cumulative sum;
- ``trainable_parameters``, ``memory_bytes`` (what the strategy carries to the
  next task), ``peak_memory_bytes`` (CUDA peak allocated on GPU; the process'
  peak resident set size on CPU, which never decreases).

The FLOP counter is imported only when something is counted: it pulls in
``torch._dynamo`` (seconds of import), which a run of ``nmc`` on ``pixels`` never needs.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Self

import torch

if TYPE_CHECKING:
    from cl.core.strategy import Context
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
    backbones are counted by :func:`cl.core.flops.flop_counter` (torch's ``FlopCounterMode``
    plus the attention kernels it misses), imported only then (it pulls in
    ``torch._dynamo``, seconds of import). The probe runs the model in evaluation mode and
    then restores every module's mode: it happens between a strategy's ``before_task`` and
    its training, and must not change what training sees (dropout and routing-noise draws,
    BatchNorm statistics, MoE-Adapters' expert activation counts).
    """
    known = backbone.analytic_flops(tuple(image.shape))
    if known is not None:
        return int(known)
    from cl.core.flops import flop_counter

    model = getattr(backbone, "model", None)
    modes = ([(m, m.training) for m in model.modules()] if isinstance(model, torch.nn.Module)
             else [])
    counter = flop_counter()
    try:
        for module, _ in modes:
            module.training = False
        with torch.inference_mode(), counter:
            backbone.encode_images(image.unsqueeze(0))
    finally:
        for module, training in modes:
            module.training = training
    return int(counter.get_total_flops())


class ComputeMeter:
    """Collects the per-task counters described in the module docstring."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.forwards = 0
        self._forwards_at_task_start = 0
        self.flops_per_image: int | None = None
        #: seconds spent in feature extraction so far (see :meth:`count_backbone`)
        self.extract_seconds = 0.0

    @contextlib.contextmanager
    def time(self, tracker: Tracker, t: int, key: str) -> Iterator[None]:
        """Add the block's wall time to ``key`` of task ``t``, the feature extraction inside it
        to ``extract_seconds`` instead."""
        start, extracting = time.perf_counter(), self.extract_seconds
        try:
            yield
        finally:
            extracted = self.extract_seconds - extracting
            tracker.add_compute(t, **{key: time.perf_counter() - start - extracted,
                                      "extract_seconds": extracted})

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
        """Feature extraction: count images passed to ``backbone.encode_images`` inside the
        block and add its wall time to :attr:`extract_seconds`."""
        original = backbone.encode_images

        def counted(batch: torch.Tensor) -> torch.Tensor:
            self.forwards += int(batch.shape[0])
            return original(batch)

        backbone.encode_images = counted  # type: ignore[method-assign]
        start = time.perf_counter()
        try:
            yield
        finally:
            self.extract_seconds += time.perf_counter() - start
            del backbone.encode_images

    @contextlib.contextmanager
    def training_flops(self, strategy: Any, ctx: Context) -> Iterator[None]:
        """Count the FLOPs of the training inside the block into ``ctx`` (``train_flops``) when
        the strategy trains and does not count them itself (see :func:`counts_itself`)."""
        if counts_itself(strategy) or not trains_with_torch(strategy):
            yield
            return
        before = ctx.counters.get("train_flops")
        with SampledFlopCounter() as counter:
            yield
        if ctx.counters.get("train_flops") == before:  # the strategy did not count them itself
            ctx.count("train_flops", counter.total())

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


def counts_itself(strategy: Any) -> bool:
    """Whether ``strategy`` records its own ``train_flops`` (``counts_flops = True``)."""
    return getattr(strategy, "counts_flops", None) is True


def trains_with_torch(strategy: Any) -> bool:
    """Whether the runner should count ``strategy``'s training FLOPs: it says so
    (``counts_flops``: ``None`` lets the runner decide, ``False`` declares nothing to count),
    trains on images, or holds a ``torch.nn.Module`` or optimiser (directly or in a list,
    tuple or dict attribute)."""
    declared = getattr(strategy, "counts_flops", None)
    if declared is not None:
        return False
    if getattr(strategy, "inputs", "features") == "images":
        return True
    kinds = (torch.nn.Module, torch.optim.Optimizer)
    for value in vars(strategy).values():
        items = (value.values() if isinstance(value, dict)
                 else value if isinstance(value, (list, tuple)) else (value,))
        if any(isinstance(item, kinds) for item in items):
            return True
    return False


class SampledFlopCounter:
    """FLOPs of a training block, counted on its first optimiser steps and extrapolated.

    Inside the block, :func:`cl.core.flops.flop_counter` counts every
    operation until the ``sample_steps``-th ``torch.optim`` step (a global optimiser
    step hook sees every optimiser); then the counter leaves and each later step is
    charged the FLOPs of the last counted one. Total:
    ``F(steps 1..k) + (n − k) · F(step k)`` for ``n`` steps, exact when steps are alike
    (same batch size, same work), as in a training loop after its first step. A block
    that never steps an optimiser is counted in full.

    Parameters
    ----------
    sample_steps : int
        Steps counted exactly (2: the first, with its setup, and a steady one).
    """

    def __init__(self, sample_steps: int = 2) -> None:
        if sample_steps < 1:
            raise ValueError(f"sample_steps must be >= 1, got {sample_steps}.")
        self.sample_steps = sample_steps
        self.steps = 0
        self._counted = 0  # FLOPs up to the last step counted
        self._last_step = 0  # FLOPs of the last step counted
        self._counter: Any = None
        self._hook: Any = None
        self._left_at: int | None = None  # steps done when the counter left

    def __enter__(self) -> Self:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        from cl.core.flops import flop_counter

        self._counter = flop_counter()
        self._counter.__enter__()
        self._hook = register_optimizer_step_post_hook(self._stepped)
        return self

    def _stepped(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.steps += 1
        if self._counter is None:
            return
        total = self._counter.get_total_flops()
        self._last_step, self._counted = total - self._counted, total
        if self.steps >= self.sample_steps and self._on_top():
            self._left_at = self.steps
            self._leave()

    def _on_top(self) -> bool:
        """Whether the counter's mode is the innermost dispatch mode (safe to leave now)."""
        from torch.utils._python_dispatch import _get_current_dispatch_mode

        return _get_current_dispatch_mode() is getattr(self._counter, "mode", None)

    def _leave(self) -> None:
        counter, self._counter = self._counter, None
        counter.__exit__(None, None, None)

    def __exit__(self, *exc: object) -> None:
        self._hook.remove()
        if self._counter is not None:  # counted in full
            self._counted = self._counter.get_total_flops()
            self._leave()

    def total(self) -> int:
        """FLOPs of the block (counted, plus the extrapolated steps)."""
        if self._left_at is None:
            return int(self._counted)
        return int(self._counted + (self.steps - self._left_at) * self._last_step)
