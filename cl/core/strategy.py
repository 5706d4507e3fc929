"""The strategy protocol: what the runner calls, and what it hands over.

A strategy learns from one task at a time and predicts on any task. The
runner is the only loop; it calls, for each task ``t`` of the stream::

    strategy.before_task(ctx)
    strategy.train_task(data, ctx)        # data: TaskData of task t's train split
    strategy.after_task(ctx)
    strategy.predict(inputs, label_space, ctx)   # per evaluation batch, every task

``inputs`` (and ``TaskData``) are *features* — the backbone's image embeddings,
shape (N, D), taken from the on-disk cache — when ``strategy.inputs ==
"features"``, and preprocessed *image batches* (N, 3, H, W) when it is
``"images"``. Feature strategies never run the backbone themselves.

Subclass :class:`Strategy` and override what you need; ``train_task`` and
``predict`` are required. For checkpoint/resume, ``state_dict`` must return
only tensors, numbers, strings and (nested) lists/dicts of them, and
``load_state_dict`` must restore the exact behaviour.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch.utils.data import Dataset

from cl.core.hooks import STRATEGY_HOOKS, check_hook_names
from cl.core.plugin import Plugin, call_plugin
from cl.errors import ProtocolError
from streams.core import LabelSpace, Stream, Task

if TYPE_CHECKING:
    from cl.models.backbones import Backbone

InputKind = Literal["features", "images"]
REQUIRED: tuple[str, ...] = ("train_task", "predict")


@dataclass
class Context:
    """Everything a strategy may use for the current step, passed explicitly.

    Attributes
    ----------
    task_index : int
        Index ``t`` of the task being learned (or last learned, at evaluation).
    task : Task
    stream : Stream
    label_space : LabelSpace
        Classes to predict over while training task ``t`` (scenario-dependent).
    backbone : Backbone
        The run's backbone. Feature strategies never encode images with it (they come
        from the cache); image strategies may run it and may change ``backbone.model``
        in place, then call ``backbone.refresh_fingerprint()`` and keep the change in
        ``state_dict`` (a resumed run builds a fresh backbone). See
        docs/own_strategies.md for what a strategy may do with every field.
    device : torch.device
    seed : int
        Run seed, in ``[0, 2**31 - 2]`` (:func:`cl.runtime.seeding.check_seed`); derive
        task-level randomness from ``generator``.
    generator : torch.Generator
        CPU generator seeded with :func:`cl.runtime.seeding.derive_seed`:
        ``(seed · 100_003 + task_index + 1) mod (2³¹ − 1)``, with ``task_index = −1``
        for the evaluation before any training (the zero-shot row).
    logger : logging.Logger
    record : callable ``(key, value) -> None``
        Stores a JSON-able value in the tracker under the current task
        (e.g. chosen ensemble weight, effective ranks); lands in ``results.json``.
    trained_tasks : int
        Number of tasks trained so far (0 while the zero-shot row is evaluated).
    plugins : list of Plugin
        Attached plugins; strategies that train on minibatches call
        :meth:`before_batch` and :meth:`after_batch` so plugins (replay...) apply.
    progress : bool
        Whether to show progress bars.
    batch_size, num_workers : int
        Data-loading settings chosen by the user for the run.
    run_dir : Path or None
        The run directory (results, checkpoints), e.g. for a plugin's own files;
        ``None`` outside a runner.
    """

    task_index: int
    task: Task
    stream: Stream
    label_space: LabelSpace
    backbone: Backbone
    device: torch.device
    seed: int
    generator: torch.Generator
    logger: logging.Logger
    record: Callable[[str, Any], None]
    trained_tasks: int = 0
    plugins: list[Plugin] = field(default_factory=list)
    progress: bool = True
    batch_size: int = 256
    num_workers: int = 0
    counters: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None

    def count(self, key: str, amount: float) -> None:
        """Add ``amount`` to a compute counter of this task (e.g. ``"examples_seen"``)."""
        self.counters[key] = self.counters.get(key, 0.0) + float(amount)

    def before_batch(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Let every plugin see (and possibly extend) a training batch ``x`` (B, ...), ``y`` (B,)."""
        for plugin in self.plugins:
            x, y = call_plugin(plugin, "before_batch", x, y, self)
        return x, y

    def after_batch(self, loss: torch.Tensor) -> None:
        """Tell every plugin a training step finished with ``loss``."""
        for plugin in self.plugins:
            call_plugin(plugin, "after_batch", loss, self)


@dataclass(frozen=True)
class TaskData:
    """Training data of one task.

    Exactly one of ``features`` or ``dataset`` is set, depending on the strategy's
    ``inputs``.

    Attributes
    ----------
    task : Task
    targets : torch.Tensor, shape (N,), int64
        *Global* class ids (``stream.class_offsets[t] + local label``).
    features : torch.Tensor or None, shape (N, D), float32
        Cached backbone embeddings (L2-normalised for VLM backbones).
    dataset : Dataset or None
        Yields ``(image_tensor (3, H, W), global_class_id)`` with the backbone's
        preprocessing applied.
    """

    task: Task
    targets: torch.Tensor
    features: torch.Tensor | None = None
    dataset: Dataset | None = None


class Strategy:
    """Base class for strategies (see module docstring for the protocol).

    Class attributes
    ----------------
    inputs : {"features", "images"}
        What ``train_task`` and ``predict`` receive.
    needs_text : bool
        True when the strategy needs a backbone with a text tower.
    searchable : mapping of str to range
        Hyper-parameters the per-task search of the NEVIS'22 protocol may set
        (:mod:`cl.core.selection`), with their ranges, in search order, e.g.
        ``{"lr": ("log-uniform", 1e-4, 1e-1), "label_smoothing": ("uniform", 0.0, 0.3)}``.
        Empty for strategies without a search (training-free ones).
    counts_flops : bool or None
        Who counts training FLOPs (``results.json`` → ``compute.train_flops``). ``None``
        (default): the runner does, when the strategy trains on images or holds a
        ``torch.nn.Module`` or optimiser (:class:`cl.core.compute.SampledFlopCounter`);
        ``True``: the strategy calls ``ctx.count("train_flops", n)`` itself; ``False``:
        nothing to count (no torch training).
    """

    inputs: ClassVar[InputKind] = "features"
    needs_text: ClassVar[bool] = False
    searchable: ClassVar[Mapping[str, tuple[Any, ...]]] = {}
    counts_flops: ClassVar[bool | None] = None

    def before_task(self, ctx: Context) -> None:
        """Called before ``train_task``; default does nothing."""

    def train_task(self, data: TaskData, ctx: Context) -> None:
        """Learn task ``ctx.task_index`` from ``data``."""
        raise NotImplementedError

    def after_task(self, ctx: Context) -> None:
        """Called after ``train_task`` (e.g. merge adapters); default does nothing."""

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        """Logits of shape (N, len(label_space)) for a batch of inputs."""
        raise NotImplementedError

    def check_run(self, backbone: Any, stream: Stream) -> dict[str, Any]:
        """Check the options against the run's backbone and stream, before anything runs.

        Raise ``ValueError`` naming both options (or the option and the backbone or stream)
        where a combination is impossible; return ``{option: effective value}`` for options
        the run cannot honour and replaces (``rail``'s ``fusion`` on a backbone without a
        text tower is ``False``). The runner warns once for each and records them in
        ``results.json`` under ``effective_options``. The default checks nothing.
        """
        return {}

    def set_hyperparameters(self, values: Mapping[str, Any]) -> None:
        """Set searchable hyper-parameters before a trial of the per-task search.

        The default sets the attributes of those names (a strategy storing its
        options verbatim, as :class:`strategies.finetune.Finetune`); override it
        when they live elsewhere (LoRA's options dataclass).

        Raises
        ------
        ValueError
            A name the strategy does not declare in :attr:`searchable`.
        """
        unknown = [k for k in values if k not in self.searchable]
        if unknown:
            raise ValueError(f"{type(self).__name__} has no searchable hyper-parameter "
                             f"{unknown[0]!r}; searchable: {', '.join(self.searchable) or '(none)'}.")
        for key, value in values.items():
            setattr(self, key, value)

    def trainable_parameters(self) -> int:
        """Number of parameters trained in the last task (0 for training-free)."""
        return 0

    def memory_bytes(self) -> int:
        """Bytes the strategy carries between tasks (statistics, adapters, exemplars)."""
        return 0

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run after the last finished task."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""


def check_strategy(obj: object) -> None:
    """Raise :class:`~cl.errors.ProtocolError` if ``obj`` is not a usable strategy.

    The message names the missing hooks, a bad ``inputs`` value, or a method
    named like a hook that is not one (``after_tsak``).
    """
    missing = [h for h in REQUIRED if not callable(getattr(obj, h, None))]
    if isinstance(obj, Strategy):
        cls = type(obj)
        missing = [h for h in REQUIRED if getattr(cls, h) is getattr(Strategy, h)]
    if missing:
        raise ProtocolError(
            f"{type(obj).__name__} does not implement the strategy protocol: "
            f"missing {', '.join(missing)}. See cl.Strategy."
        )
    kind = getattr(obj, "inputs", "features")
    if kind not in ("features", "images"):
        raise ProtocolError(
            f"{type(obj).__name__}.inputs must be 'features' or 'images', got {kind!r}."
        )
    check_hook_names(obj, STRATEGY_HOOKS, Strategy, "strategy")


__all__ = ["REQUIRED", "Context", "InputKind", "Strategy", "TaskData", "check_strategy"]
