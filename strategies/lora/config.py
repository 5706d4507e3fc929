"""The options of the LoRA-family strategies, as dataclasses validated on construction.

As peft's ``LoraConfig``: one frozen dataclass holds a strategy's
hyper-parameters and ``__post_init__`` rejects bad values with a message
naming them. :class:`LoraOptions` (the training options of
:class:`~strategies.adaptation.options.TrainingOptions` plus placement and rank) is
shared by ``lora`` and ``codyra`` (and by any strategy that trains open_clip through
:class:`~strategies.lora.base.MergedAdapterStrategy`); :class:`CoDyRAOptions`
adds CoDyRA's sparsity schedule. The fields *are* the strategies' options for
config files and ``--set`` (see :func:`cl.config.options.options_schema`).
Defaults are the CoDyRA reference runner's (Lu et al., arXiv 2412.01004).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from strategies.adaptation.options import (
    TrainingOptions,
    check_positive_int,
    checked_betas,
    towers_of,
)

TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj", "c_fc", "c_proj")
"""Linears of an open_clip residual block that may carry an adapter."""


def check_targets(targets: Sequence[str]) -> tuple[str, ...]:
    """Validated, de-duplicated target names in canonical order.

    Raises
    ------
    ValueError
        Empty list or unknown names (the message lists the valid ones).
    """
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ValueError(
            f"unknown LoRA target(s) {unknown}; valid targets: {', '.join(TARGETS)}."
        )
    if not targets:
        raise ValueError(f"targets is empty; choose any of {', '.join(TARGETS)}.")
    return tuple(t for t in TARGETS if t in targets)


@dataclass(frozen=True, kw_only=True)
class LoraOptions(TrainingOptions):
    """Hyper-parameters of adapters trained per task on images and merged after it.

    Attributes
    ----------
    rank : int
        Adapter rank r per module (> 0).
    encoders : {"vision", "text", "both"}
        Towers whose residual blocks get adapters.
    targets : tuple of str
        Any of ``q_proj, k_proj, v_proj, out_proj, c_fc, c_proj`` (kept in that order).
    lr : float
        AdamW learning rate, cosine-decayed to 0 over the task.
    iterations : int
        Optimiser steps per task (the loader is cycled).
    batch_size : int
        Training minibatch size.
    weight_decay : float
        AdamW weight decay (>= 0).
    betas : tuple of float
        AdamW (β₁, β₂), each in [0, 1).
    text_to_image : bool
        Add the reference code's text→image term to the loss.
    label_smoothing : float
        Label smoothing of the image→text cross-entropy, in [0, 1) (0: none, as the
        reference; searched by the NEVIS'22 protocol).
    amp : bool
        bf16 autocast on CUDA (ignored on CPU, which runs fp32).
    """

    rank: int = 16
    encoders: Literal["vision", "text", "both"] = "both"
    targets: tuple[str, ...] = TARGETS
    lr: float = 5e-4
    iterations: int = 500
    batch_size: int = 64
    weight_decay: float = 0.0
    betas: tuple[float, ...] = (0.9, 0.999)
    text_to_image: bool = False
    label_smoothing: float = 0.0
    amp: bool = True

    def __post_init__(self) -> None:
        check_positive_int("rank", self.rank)
        super().__post_init__()
        towers_of(self.encoders)
        object.__setattr__(self, "targets", check_targets(self.targets))
        if not (isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1):
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}.")
        object.__setattr__(self, "betas", checked_betas(self.betas))


@dataclass(frozen=True, kw_only=True)
class CoDyRAOptions(LoraOptions):
    """:class:`LoraOptions` plus CoDyRA's rank selection (Lu et al. 2024, Alg. 1).

    Attributes
    ----------
    max_kappa : float
        Final soft-threshold κ of the importance weights (reference: 0.005).
    kappa_steps : int
        Grid points of κ between 0 and ``max_kappa`` (reference: 50; >= 2).
    dense_fraction : float
        Fraction of iterations trained without thresholding (reference: 0.5), in [0, 1).
    threshold_rule : {"paper", "code"}
        T_κ of the paper, or the public code's variant (:func:`strategies.lora.gated.soft_threshold`).
    """

    max_kappa: float = 0.005
    kappa_steps: int = 50
    dense_fraction: float = 0.5
    threshold_rule: Literal["paper", "code"] = "paper"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.max_kappa) and self.max_kappa >= 0):
            raise ValueError(f"max_kappa must be >= 0, got {self.max_kappa!r}.")
        if isinstance(self.kappa_steps, bool) or not isinstance(self.kappa_steps, int) \
                or self.kappa_steps < 2:
            raise ValueError(f"kappa_steps must be an integer >= 2, got {self.kappa_steps!r}.")
        if not 0 <= self.dense_fraction < 1:
            raise ValueError(f"dense_fraction must be in [0, 1), got {self.dense_fraction!r}.")
        if self.threshold_rule not in ("paper", "code"):
            raise ValueError(
                f"threshold_rule must be 'paper' or 'code', got {self.threshold_rule!r}.")
