"""The options of the strategies that train open_clip on images, as validated frozen dataclasses.

As peft's ``LoraConfig``: one frozen dataclass holds a strategy's hyper-parameters and
``__post_init__`` rejects bad values with a message naming them. The fields *are* the
strategy's options for config files and ``--set`` (the strategy names the class as
``options_class``; see :func:`cl.config.options.options_schema`).

* :class:`TrainingOptions` — what every strategy trained by
  :class:`~strategies.adaptation.base.AdaptingStrategy` takes: ``lr``, ``iterations``,
  ``batch_size``, ``weight_decay``, ``amp`` (LoRA and CoDyRA's options extend it too).
* :class:`FinetuneOptions` (``clip-finetune``) and its extensions :class:`LwFOptions`,
  :class:`WiseFTOptions`, :class:`ZSCLOptions`, :class:`MoEAdaptersOptions`; and
  :class:`SLCAOptions`. Their defaults are the reference runs' (ZSCL ``scripts/*.sh``,
  MoE-Adapters ``train_full_shot_router11_experts22_1000iters.sh``, SLCA
  ``exps/slca/slca_cifar.json``; ``docs/adaptation.md`` lists them).

This module imports no torch (``cl list`` reads it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal

ENCODERS: tuple[str, ...] = ("vision", "text", "both")


def towers_of(encoders: str) -> tuple[str, ...]:
    """``"both"`` → ("vision", "text"); ``ValueError`` for another value."""
    if encoders not in ENCODERS:
        raise ValueError(f"encoders must be one of {list(ENCODERS)}, got {encoders!r}.")
    return ("vision", "text") if encoders == "both" else (encoders,)


def check_positive_int(name: str, value: object, *, zero: bool = False) -> None:
    """``ValueError`` unless ``value`` is an int > 0 (>= 0 with ``zero``), bools excluded."""
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        kind = "a non-negative" if zero else "a positive"
        raise ValueError(f"{name} must be {kind} integer, got {value!r}.")


def check_number(name: str, value: object, *, low: float = 0.0, high: float = math.inf,
                 low_open: bool = False, high_open: bool = True) -> None:
    """``ValueError`` unless ``value`` is a finite number in the stated interval."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and \
             (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be a finite number in {lo}{low:g}, {high:g}{hi}, "
                         f"got {value!r}.")


def checked_betas(betas: Sequence[float]) -> tuple[float, float]:
    """AdamW's (β₁, β₂) as floats; ``ValueError`` unless two numbers in [0, 1)."""
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {list(betas)}.")
    return float(betas[0]), float(betas[1])


@dataclass(frozen=True, kw_only=True)
class TrainingOptions:
    """What every strategy trained on images by the adapting-strategy loop takes.

    Attributes
    ----------
    lr : float
        Base learning rate (> 0).
    iterations : int
        Optimiser steps per task (the task's loader is cycled).
    batch_size : int
        Training minibatch size.
    weight_decay : float
        Optimiser weight decay (>= 0).
    amp : bool
        bf16 autocast on CUDA (ignored on CPU, which runs fp32).
    compile : bool
        ``torch.compile`` the image tower while training (``nn.Module.compile``; the first
        steps pay the compilation; undone after the task). See docs/performance.md.
    """

    lr: float = 1e-5
    iterations: int = 1000
    batch_size: int = 64
    weight_decay: float = 0.0
    amp: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size"):
            check_positive_int(name, getattr(self, name))
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")


@dataclass(frozen=True, kw_only=True)
class FinetuneOptions(TrainingOptions):
    """``clip-finetune``: continual fine-tuning of open_clip (ZSCL's ``scripts/finetune.sh``).

    Attributes
    ----------
    encoders : {"vision", "text", "both"}
        Towers trained (``both``: every weight but the logit scale, the reference's
        ``--train-mode whole``).
    betas : tuple of float
        AdamW (β₁, β₂).
    warmup : int
        Linear warm-up steps before the cosine decay (100).
    label_smoothing : float
        ε of the classification loss, in [0, 1) (0.2).
    lr_per_task : tuple of float
        One learning rate per task of the stream, in stream order; empty: ``lr`` for all.
    """

    encoders: Literal["vision", "text", "both"] = "both"
    betas: tuple[float, ...] = (0.9, 0.999)
    warmup: int = 100
    label_smoothing: float = 0.2
    lr_per_task: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        towers_of(self.encoders)
        object.__setattr__(self, "betas", checked_betas(self.betas))
        check_positive_int("warmup", self.warmup, zero=True)
        check_number("label_smoothing", self.label_smoothing, high=1.0)
        for i, lr in enumerate(self.lr_per_task):
            check_number(f"lr_per_task[{i}]", lr, low_open=True)
        object.__setattr__(self, "lr_per_task", tuple(float(x) for x in self.lr_per_task))
        default_lr = next(f.default for f in fields(self) if f.name == "lr")
        if self.lr_per_task and self.lr != default_lr:
            raise ValueError(f"options 'lr' ({self.lr}) and 'lr_per_task' both set the learning "
                             "rate and 'lr_per_task' wins; give one of them.")


def _check_distillation(options: LwFOptions | ZSCLOptions) -> None:
    check_number("temperature", options.temperature, low_open=True)
    check_number("distill_weight", options.distill_weight)
    if options.distill_weight == 0 and options.temperature != 2.0:
        raise ValueError(f"option 'temperature' ({options.temperature}) softens the distillation, "
                         "which distill_weight=0 turns off; leave 'temperature' out or set "
                         "distill_weight > 0.")
    if not (options.image_loss or options.text_loss):
        raise ValueError("image_loss and text_loss are both false; set at least one true.")


@dataclass(frozen=True, kw_only=True)
class LwFOptions(FinetuneOptions):
    """``lwf``: fine-tuning plus distillation from the model the task started from.

    Attributes
    ----------
    temperature : float
        Distillation temperature T (2).
    image_loss, text_loss : bool
        Distil each image's distribution over the prompts / each prompt's over the images.
    distill_weight : float
        Weight of the distillation term (1).
    """

    temperature: float = 2.0
    image_loss: bool = True
    text_loss: bool = True
    distill_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_distillation(self)


@dataclass(frozen=True, kw_only=True)
class WiseFTOptions(FinetuneOptions):
    """``wise-ft``: fine-tuning, then weight-space interpolation after every task.

    Attributes
    ----------
    alpha : float
        Weight α of the fine-tuned weights, in [0, 1] (0.8).
    anchor : {"previous", "zeroshot"}
        θ₀: the weights the task started from, or the zero-shot weights.
    """

    alpha: float = 0.8
    anchor: Literal["previous", "zeroshot"] = "previous"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("alpha", self.alpha, high=1.0, high_open=False)
        if self.anchor not in ("previous", "zeroshot"):
            raise ValueError(f"anchor must be 'previous' or 'zeroshot', got {self.anchor!r}.")


@dataclass(frozen=True, kw_only=True)
class ZSCLOptions(FinetuneOptions):
    """``zscl``: fine-tuning with distillation on a reference set, L2 anchor, weight ensemble.

    Attributes
    ----------
    teacher : {"zeroshot", "previous"}
        The distillation teacher: the initial model (ZSCL) or the task-start model.
    reference_images : str
        Image folder of the reference set, relative to the data root (or absolute).
        Empty: the stream's own reference set (``stream.metadata["reference_set"]``, the
        toy world's held-out images and captions).
    reference_texts : str
        Text file, one reference caption per line (relative to the data root or absolute).
        Empty: the captions of the stream's reference set.
    reference_batch_size : int
        Reference images per step (64).
    temperature, image_loss, text_loss, distill_weight :
        As :class:`LwFOptions`.
    l2_weight : float
        Weight of ``Σ‖θ − θ_start‖²`` (1; 0 turns it off).
    ensemble_every : int
        Weight-ensemble period in steps (100; 0 turns averaging off).
    """

    teacher: Literal["zeroshot", "previous"] = "zeroshot"
    reference_images: str = ""
    reference_texts: str = ""
    reference_batch_size: int = 64
    temperature: float = 2.0
    image_loss: bool = True
    text_loss: bool = True
    distill_weight: float = 1.0
    l2_weight: float = 1.0
    ensemble_every: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_distillation(self)
        if self.teacher not in ("zeroshot", "previous"):
            raise ValueError(f"teacher must be 'zeroshot' or 'previous', got {self.teacher!r}.")
        if bool(self.reference_images) != bool(self.reference_texts):
            raise ValueError(
                "reference_images and reference_texts go together: give both (an image folder "
                "and a caption file) or neither (the stream's own reference set).")
        check_positive_int("reference_batch_size", self.reference_batch_size)
        if self.distill_weight == 0 and self.reference_batch_size != 64:
            raise ValueError("option 'reference_batch_size' feeds the reference-set distillation, "
                             "which distill_weight=0 turns off; leave 'reference_batch_size' out "
                             "or set distill_weight > 0.")
        check_number("l2_weight", self.l2_weight)
        check_positive_int("ensemble_every", self.ensemble_every, zero=True)


#: DDAS threshold of ``ddas_features = "clip"`` (chosen on the toy world, docs/adaptation.md)
CLIP_DDAS_THRESHOLD = 0.007


@dataclass(frozen=True, kw_only=True)
class MoEAdaptersOptions(FinetuneOptions):
    """``moe-adapters``: adapter experts with per-task routers, activate-freeze and DDAS.

    Attributes
    ----------
    experts, top_k, bottleneck : int
        Experts per block (22), experts per sample (2), adapter width (64).
    expert_dropout, expert_scale : float
        Of every adapter (0.1, 0.1).
    freeze_per_task : int
        Most used experts per block frozen after each task (2).
    balance_weight : float
        Weight of the load-balancing loss (0: the reference computes it and never adds it).
    ddas_features : {"clip", "alexnet"}
        Selector features: the frozen CLIP image embedding, or ImageNet AlexNet conv5
        (the reference; needs torchvision's weights in the torch hub cache).
    ddas_threshold : float or None
        Largest best reconstruction error still routed to a task; None: 0.0655 for
        AlexNet features (the reference's), the toy-world value for CLIP features.
    ddas_iterations, ddas_code_dim : int
        Adam steps per task autoencoder (301), code width (100).
    ddas_lr : float
        Autoencoder learning rate (0.01, ×0.1 every 10 epochs).
    ddas_per_image : bool
        Route every image on its own (False: one decision per evaluation batch, the reference).
    ddas_reference : str
        Image folder of a reference domain whose autoencoder sends its winners to zero-shot
        (TinyImageNet in the reference; relative to the data root); empty: none.
    ddas_reference_iterations : int
        Adam steps of the reference autoencoder (1001).
    """

    lr: float = 1e-3
    experts: int = 22
    top_k: int = 2
    bottleneck: int = 64
    expert_dropout: float = 0.1
    expert_scale: float = 0.1
    freeze_per_task: int = 2
    balance_weight: float = 0.0
    ddas_features: Literal["clip", "alexnet"] = "clip"
    ddas_threshold: float | None = None
    ddas_iterations: int = 301
    ddas_code_dim: int = 100
    ddas_lr: float = 0.01
    ddas_per_image: bool = False
    ddas_reference: str = ""
    ddas_reference_iterations: int = 1001

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("experts", "top_k", "bottleneck", "ddas_iterations", "ddas_code_dim",
                     "ddas_reference_iterations"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("freeze_per_task", self.freeze_per_task, zero=True)
        if self.top_k > self.experts or self.freeze_per_task > self.experts:
            raise ValueError(f"top_k={self.top_k} and freeze_per_task={self.freeze_per_task} "
                             f"must not exceed experts={self.experts}.")
        check_number("expert_dropout", self.expert_dropout, high=1.0)
        check_number("expert_scale", self.expert_scale)
        check_number("balance_weight", self.balance_weight)
        check_number("ddas_lr", self.ddas_lr, low_open=True)
        if self.ddas_threshold is not None:
            check_number("ddas_threshold", self.ddas_threshold)
        if not self.ddas_reference and self.ddas_reference_iterations != 1001:
            raise ValueError(f"option 'ddas_reference_iterations' ({self.ddas_reference_iterations}) "
                             "trains the autoencoder of 'ddas_reference', which is not set; set "
                             "strategy.ddas_reference or leave 'ddas_reference_iterations' out.")
        if self.ddas_features not in ("clip", "alexnet"):
            raise ValueError(
                f"ddas_features must be 'clip' or 'alexnet', got {self.ddas_features!r}.")

    @property
    def threshold(self) -> float:
        """``ddas_threshold``, or the default of the chosen selector features."""
        if self.ddas_threshold is not None:
            return self.ddas_threshold
        return 0.0655 if self.ddas_features == "alexnet" else CLIP_DDAS_THRESHOLD


@dataclass(frozen=True, kw_only=True)
class SLCAOptions(TrainingOptions):
    """``slca``: slow learner (SGD, backbone at a fraction of the head's rate) + classifier alignment.

    Attributes
    ----------
    lr : float
        The head's SGD rate (0.01); the image tower trains at ``lr · backbone_lr_scale``.
    backbone_lr_scale : float
        1/100 (0 freezes the image tower).
    momentum : float
        SGD momentum (0.9).
    milestones : tuple of int
        Steps (within a task) at which the rate is multiplied by 0.1.
    head_init : {"random", "text"}
        A task's new head: truncated normal (the reference), or its class-prompt
        embeddings times the logit scale (zero-shot CLIP as the starting classifier).
    ca_epochs, ca_samples_per_class : int
        Classifier alignment: epochs (5) and pseudo-features per class per epoch (256);
        ``ca_epochs = 0`` turns alignment off.
    ca_logit_norm : float or None
        Logit-normalisation temperature of the alignment (0.1); None: plain cross-entropy.
    """

    lr: float = 0.01
    batch_size: int = 128
    weight_decay: float = 5e-4
    backbone_lr_scale: float = 0.01
    momentum: float = 0.9
    milestones: tuple[int, ...] = ()
    head_init: Literal["random", "text"] = "random"
    ca_epochs: int = 5
    ca_samples_per_class: int = 256
    ca_logit_norm: float | None = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("backbone_lr_scale", self.backbone_lr_scale)
        check_number("momentum", self.momentum, high=1.0)
        for i, m in enumerate(self.milestones):
            check_positive_int(f"milestones[{i}]", m)
        object.__setattr__(self, "milestones", tuple(sorted(self.milestones)))
        if self.milestones and self.milestones[-1] >= self.iterations:
            raise ValueError(f"option 'milestones' holds {self.milestones[-1]}, which is not below "
                             f"'iterations' ({self.iterations}), so the rate is never cut there; "
                             "give milestones below iterations.")
        if self.head_init not in ("random", "text"):
            raise ValueError(f"head_init must be 'random' or 'text', got {self.head_init!r}.")
        check_positive_int("ca_epochs", self.ca_epochs, zero=True)
        check_positive_int("ca_samples_per_class", self.ca_samples_per_class)
        if self.ca_logit_norm is not None:
            check_number("ca_logit_norm", self.ca_logit_norm, low_open=True)


@dataclass(frozen=True, kw_only=True)
class TrainerOptions(TrainingOptions):
    """Options of :class:`strategies.adaptation.training.TrainingStrategy` (the public base).

    Attributes
    ----------
    optimizer : {"adamw", "adam", "sgd"}
        ``torch.optim.AdamW``, ``Adam`` (weight decay as L2, as ``torch.optim.Adam``) or
        ``SGD`` with ``momentum``.
    betas : tuple of float
        (β₁, β₂) of Adam / AdamW.
    momentum : float
        SGD momentum, in [0, 1).
    schedule : {"cosine", "constant"}
        Rate factor per step: ``½(1 + cos(π·i/T))`` after ``warmup`` linear steps, or 1.
    warmup : int
        Linear warm-up steps (>= 0) before the schedule.
    clip_grad_norm : float
        Maximum global gradient norm before each step (``torch.nn.utils.clip_grad_norm_``);
        0 disables clipping.
    epochs : int
        When > 0, each task trains for this many passes over its data:
        ``epochs · ⌈N / batch_size⌉`` steps replace ``iterations`` (0: ``iterations``).
    """

    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    betas: tuple[float, ...] = (0.9, 0.999)
    momentum: float = 0.9
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup: int = 0
    clip_grad_norm: float = 0.0
    epochs: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.optimizer not in ("adamw", "adam", "sgd"):
            raise ValueError(f"optimizer must be 'adamw', 'adam' or 'sgd', got "
                             f"{self.optimizer!r}.")
        object.__setattr__(self, "betas", checked_betas(self.betas))
        check_number("momentum", self.momentum, high=1.0)
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}.")
        check_positive_int("warmup", self.warmup, zero=True)
        check_number("clip_grad_norm", self.clip_grad_norm)
        check_positive_int("epochs", self.epochs, zero=True)
