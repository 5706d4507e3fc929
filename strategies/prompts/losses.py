"""Training objectives of the prompt methods: old-class logit masking, orthogonality penalty.

* :func:`mask_logits` — the references' ``train_mask``: while learning task t the logits
  of every class outside task t are ``−inf`` (``engine.py`` of l2p-pytorch and
  dualprompt-pytorch, ``logits.index_fill(1, not_mask, -inf)``; CODA-Prompt's
  ``learners/prompt.py`` sets the old classes to ``−inf`` and slices off the future ones,
  the same cross-entropy).
* :func:`ortho_penalty` — CODA-Prompt eq. 6, ``mean((T Tᵀ − I)²)`` of a (K, ·) matrix.
"""

from __future__ import annotations

import torch


def mask_logits(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``logits`` (B, C) with ``−inf`` in every column not in ``keep`` (column indices)."""
    drop = torch.ones(logits.shape[1], dtype=torch.bool, device=logits.device)
    drop[keep] = False
    return logits.masked_fill(drop, float("-inf"))


def ortho_penalty(t: torch.Tensor) -> torch.Tensor:
    """``mean((T Tᵀ − I)²)`` of ``t`` (K, F) (CODA-Prompt ``ortho_penalty``)."""
    eye = torch.eye(t.shape[0], device=t.device, dtype=t.dtype)
    return ((t @ t.T - eye) ** 2).mean()


__all__ = ["mask_logits", "ortho_penalty"]
