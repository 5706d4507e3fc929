"""Learning-rate factors per optimiser step: cosine, and linear warm-up then cosine.

:func:`cosine_factor` is LoRA's and CoDyRA's schedule. The ZSCL and MoE-Adapters
references (built on WiSE-FT's code) call ``utils.cosine_lr(optimizer, lr,
warmup_length=100, steps=iterations)`` and set the rate before every step
(ZSCL ``mtil/src/utils.py`` l. 9–32; MoE-Adapters the same file):
:func:`warmup_cosine_factor`, the same curve after a warm-up.
"""

from __future__ import annotations

import math


def cosine_factor(iteration: int, total: int) -> float:
    """Learning-rate factor ``½(1 + cos(π·i/T))`` (cosine schedule, no warm-up, as the reference)."""
    return 0.5 * (1.0 + math.cos(math.pi * iteration / total))


def warmup_cosine_factor(step: int, total: int, warmup: int) -> float:
    """Factor of the base learning rate at optimiser step ``step`` (0-based).

    ``(step + 1) / W`` while ``step < W``, then ``½ (1 + cos(π (step − W) / (T − W)))``
    (SGDR, Loshchilov & Hutter 2017, Eq. 5 without restarts, after a linear warm-up as
    Goyal et al. 2017 §2.2), and 0 from ``step = T`` on. The references loop over
    ``range(T + 1)``: their extra step ``T`` runs at factor 0, which leaves AdamW's
    weights unchanged, so ``T`` steps here give the same weights as their ``T + 1``.

    Parameters
    ----------
    step : int >= 0
    total : int > 0
        T, the number of optimiser steps of the task.
    warmup : int >= 0
        W. With ``W >= T`` the whole task is warm-up (the reference would divide by zero).
    """
    if step < 0 or total <= 0 or warmup < 0:
        raise ValueError(
            f"need step >= 0, total > 0 and warmup >= 0, got step={step}, total={total}, "
            f"warmup={warmup}."
        )
    if step < warmup:
        return (step + 1) / warmup
    if step >= total:
        return 0.0
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))
