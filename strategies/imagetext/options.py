"""Options of the image-text strategies, as dataclasses validated on construction.

The fields *are* the strategies' options for config files and ``--set`` (see
:func:`cl.config.options.options_schema`). ``batch_size`` is the *global*
contrastive batch: under ``torchrun`` every rank takes ``batch_size / W`` pairs
and the loss is computed over the gathered features of all ranks. Defaults are
small-scale starting points; the papers' values are in each field's note and in
``experiments/imagetext/*.toml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["CTPOptions", "ContrastiveOptions", "ERContrastiveOptions", "ModXOptions"]


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _number(name: str, value: object, *, low: float, high: float = math.inf,
            open_low: bool = False, open_high: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low)
    ok = ok and (value < high if open_high else value <= high)
    if not ok:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise ValueError(f"{name} must be a number in {left}{low}, {high}{right}, got {value!r}.")


@dataclass(frozen=True, kw_only=True)
class ContrastiveOptions:
    """Sequential CLIP contrastive fine-tuning of the whole model (``contrastive-ft``).

    Attributes
    ----------
    iterations : int or None
        Optimiser steps per task; overrides ``epochs`` when set.
    epochs : float
        Passes over each task's pairs, ``ceil(epochs * (N // batch_size))`` steps
        (Mod-X: 35, CTP: 5).
    batch_size : int
        Global contrastive batch (Mod-X: 280, CTP: 512); incomplete batches are dropped.
    lr : float
        AdamW peak learning rate (Mod-X: 5e-4, CTP: 1e-4).
    min_lr : float
        Learning rate at the end of the cosine decay (CTP: 1e-6).
    warmup : float
        Fraction of the task's steps of linear warm-up from 0 (Mod-X: 0.2).
    weight_decay : float
        AdamW weight decay (Mod-X: 0.1, CTP: 0.05).
    betas : tuple of float
        AdamW (β₁, β₂).
    eps : float
        AdamW ε (Mod-X: 1e-8).
    logit_scale_max : float
        CLIP's learned logit scale is clamped to ``[1, logit_scale_max]`` after each step
        (Mod-X and open_clip: 100).
    caption : {"random", "first"}
        Caption of an image: drawn uniformly among its captions anew in every epoch (each
        pair is seen once per epoch, as Mod-X's ``random.choice`` per fetch), or always the
        first.
    amp : bool
        bf16 autocast on CUDA (ignored on CPU).
    """

    iterations: int | None = None
    epochs: float = 1.0
    batch_size: int = 256
    lr: float = 1e-5
    min_lr: float = 0.0
    warmup: float = 0.0
    weight_decay: float = 0.1
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    logit_scale_max: float = 100.0
    caption: Literal["random", "first"] = "random"
    amp: bool = False

    def __post_init__(self) -> None:
        if self.iterations is not None:
            _positive_int("iterations", self.iterations)
            if self.epochs != 1.0:
                raise ValueError(f"options 'iterations' ({self.iterations}) and 'epochs' "
                                 f"({self.epochs}) both set the length of training and "
                                 "'iterations' wins; give one of them.")
        _number("epochs", self.epochs, low=0.0, open_low=True)
        _positive_int("batch_size", self.batch_size)
        _number("lr", self.lr, low=0.0, open_low=True)
        _number("min_lr", self.min_lr, low=0.0, high=self.lr, open_high=False)
        _number("warmup", self.warmup, low=0.0, high=1.0)
        _number("weight_decay", self.weight_decay, low=0.0)
        _number("eps", self.eps, low=0.0, open_low=True)
        _number("logit_scale_max", self.logit_scale_max, low=1.0, open_high=True)
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1
                                           for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}.")
        object.__setattr__(self, "betas", (float(self.betas[0]), float(self.betas[1])))
        if self.caption not in ("random", "first"):
            raise ValueError(f"caption must be 'random' or 'first', got {self.caption!r}.")


@dataclass(frozen=True, kw_only=True)
class ERContrastiveOptions(ContrastiveOptions):
    """:class:`ContrastiveOptions` plus a replay memory of pairs (``er-contrastive``).

    Attributes
    ----------
    memory : int
        Pairs kept across tasks (CTP ``episodic_mem_size``: 10,000).
    selection : {"reservoir"}
        How the memory is filled: reservoir sampling over every pair seen (CTP ``ER``).
    """

    memory: int = 10_000
    selection: Literal["reservoir"] = "reservoir"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_int("memory", self.memory)
        if self.selection != "reservoir":
            raise ValueError(f"selection must be 'reservoir', got {self.selection!r}.")


@dataclass(frozen=True, kw_only=True)
class ModXOptions(ContrastiveOptions):
    """:class:`ContrastiveOptions` plus Mod-X's distillation weight (``mod-x``).

    Attributes
    ----------
    alpha : float
        Weight of the off-diagonal distillation term (``modx_5phase.sh``: 20).
    """

    alpha: float = 20.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _number("alpha", self.alpha, low=0.0)


@dataclass(frozen=True, kw_only=True)
class CTPOptions(ContrastiveOptions):
    """:class:`ContrastiveOptions` plus CTP's momentum model, queue and temperatures (``ctp``).

    Attributes
    ----------
    temperature : float
        τ of the momentum contrast and of the topology preservation (CTP: 0.07, fixed).
    momentum : float
        Momentum of the compatible update in the tasks after the first (CTP: 0.9).
    first_task_momentum : float
        Momentum of the plain EMA update in the first task (CTP: 0.995).
    queue_size : int
        Queued momentum features K (CTP: 1,024); the global batch must divide it.
    contrastive_temperature : float or None
        τ of the in-batch contrastive term: 0.07, CTP's fixed value (``loss_ita`` of
        ``models/clip_pretrain.py``), by default; ``None`` uses CLIP's learned logit scale.
    """

    temperature: float = 0.07
    momentum: float = 0.9
    first_task_momentum: float = 0.995
    queue_size: int = 1024
    contrastive_temperature: float | None = 0.07

    def __post_init__(self) -> None:
        super().__post_init__()
        _number("temperature", self.temperature, low=0.0, open_low=True)
        _number("momentum", self.momentum, low=0.0, high=1.0, open_high=False)
        _number("first_task_momentum", self.first_task_momentum, low=0.0, high=1.0,
                open_high=False)
        _positive_int("queue_size", self.queue_size)
        if self.contrastive_temperature is not None:
            _number("contrastive_temperature", self.contrastive_temperature, low=0.0,
                    open_low=True)
        if self.queue_size % self.batch_size:
            raise ValueError(f"queue_size ({self.queue_size}) must be a multiple of the global "
                             f"batch_size ({self.batch_size}): CTP writes whole batches into it.")
