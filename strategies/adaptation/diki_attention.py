"""DIKI's residual prefix attention inside open_clip's transformer blocks.

Tang et al., "Mind the Interference: Retaining Pre-trained Knowledge in Parameter Efficient
Continual Learning of Vision-Language Models", ECCV 2024, §3.2, Eq. 3–5 (reference
``lloongx/DIKI`` @ 8ef89e794cca58134d75228ba2950ec67134491f, ``clip/attention.py``
``multi_head_attention_forward``). Per block, with the frozen projections
``q, k, v = x W_q, x W_k, x W_v`` and a task's prefix keys and values ``P_k, P_v`` (L, D):

    out = W_o [ softmax(q kᵀ/√d + M) v  +  w · softmax(q P_kᵀ/√d) P_v ]

— the pre-trained attention untouched (its own softmax), plus a *residual* attention over
the prefixes only (no mask), scaled by the calibration weight ``w`` (1 in training; see
:mod:`strategies.adaptation.diki`). Prefixes are not projected by ``W_k, W_v``. Each block
keeps a pool of one prefix pair per task, keys drawn from U(−1, 1) and values zero, so
a fresh prefix leaves the block's output unchanged.

:class:`ResidualPrefixAttention` replaces an ``nn.MultiheadAttention`` (batch first) of an
open_clip block and is called as it is; with no route set it *is* the original module's
call (bit-identical). :func:`install` / :func:`routed` put it in place and select, for
one forward, which task's prefixes each sample uses and with what weight.

Why not ``cl.models.tokens`` (prefix-tuning for L2P / DualPrompt / CODA-Prompt): there the
prefixes are concatenated to the block's own keys and values under *one* softmax, in the image
tower only. DIKI needs a second softmax over the prefixes alone, a per-sample weight on that
term, and the text tower (with its causal mask on the self part only). A ``mode="residual"``
with a ``weight`` argument in ``tokens.prefix_attention`` and text-tower support in its block
runner would host this module's computation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class ResidualPrefixAttention(nn.Module):
    """An open_clip block's multi-head attention plus DIKI's residual prefix attention.

    Parameters
    ----------
    attention : nn.MultiheadAttention
        The block's frozen attention (batch first, packed in-projection).
    pool_size : int
        Prefix pairs kept (one per task).
    prefix_len : int
        Prefix tokens L per pair.
    generator : torch.Generator, optional
        Source of the keys' U(−1, 1) draws.

    Attributes
    ----------
    prefix_pool : nn.Parameter (pool_size, 2, L, D)
        ``[:, 0]`` keys, ``[:, 1]`` values.
    route : tuple or None
        ``(ids, weight)``: prefix index per sample (B,) or one for all (scalar tensor), and
        the calibration weight per sample (B,), one for all (scalar) or None (1).
    """

    def __init__(self, attention: nn.MultiheadAttention, pool_size: int, prefix_len: int, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not attention.batch_first or attention.in_proj_weight is None:
            raise ValueError("ResidualPrefixAttention needs a batch-first nn.MultiheadAttention "
                             "with a packed in-projection (open_clip's ViT blocks).")
        self.attention = attention
        self.num_heads = attention.num_heads
        dim = attention.embed_dim
        pool = torch.zeros(pool_size, 2, prefix_len, dim)
        pool[:, 0].uniform_(-1.0, 1.0, generator=generator)
        self.prefix_pool = nn.Parameter(pool.to(attention.in_proj_weight.dtype))
        self.route: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                need_weights: bool = False, attn_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, None]:
        """(B, N, D) → ((B, N, D), None), as ``nn.MultiheadAttention`` for self-attention."""
        if self.route is None:
            return self.attention(query, key, value, need_weights=need_weights,
                                  attn_mask=attn_mask)
        a = self.attention
        batch, length, dim = query.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        q, k, v = F.linear(query, a.in_proj_weight, a.in_proj_bias).chunk(3, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, n, D) -> (B, H, n, d)
            return t.reshape(batch, t.shape[1], heads, head_dim).transpose(1, 2)

        if attn_mask is not None and attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros_like(attn_mask, dtype=q.dtype).masked_fill(attn_mask,
                                                                               float("-inf"))
        q = split(q)
        out = F.scaled_dot_product_attention(q, split(k), split(v), attn_mask)
        ids, weight = self.route
        ids = ids.expand(batch) if ids.ndim == 0 else ids
        prefix = self.prefix_pool[ids]                                   # (B, 2, L, D)
        extra = F.scaled_dot_product_attention(q, split(prefix[:, 0]), split(prefix[:, 1]))
        if weight is not None:
            extra = extra * weight.to(extra.dtype).expand(batch).view(batch, 1, 1, 1)
        out = (out + extra).transpose(1, 2).reshape(batch, length, dim)
        return F.linear(out, a.out_proj.weight, a.out_proj.bias), None


def blocks(model: nn.Module, tower: str) -> list[nn.Module]:
    """The residual blocks of ``tower`` (``"vision"`` or ``"text"``) of an open_clip CLIP."""
    transformer = model.visual.transformer if tower == "vision" else model.transformer
    return list(transformer.resblocks)


def install(model: nn.Module, tower: str, depth: int, pool_size: int, prefix_len: int, *,
            generator: torch.Generator | None = None) -> list[ResidualPrefixAttention]:
    """Wrap the attention of the first ``depth`` blocks of ``tower``; return the wrappers.

    Raises
    ------
    ValueError
        ``depth`` larger than the tower, or blocks already wrapped.
    """
    found = blocks(model, tower)
    if not 0 <= depth <= len(found):
        raise ValueError(f"DIKI {tower} depth must be in [0, {len(found)}] for this backbone, "
                         f"got {depth}.")
    out = []
    for block in found[:depth]:
        if isinstance(block.attn, ResidualPrefixAttention):
            raise ValueError("DIKI prefixes are already installed in this model.")  # noqa: TRY004
        block.attn = ResidualPrefixAttention(block.attn, pool_size, prefix_len,
                                             generator=generator)
        out.append(block.attn)
    return out


def installed(model: nn.Module, tower: str) -> list[ResidualPrefixAttention]:
    """The DIKI wrappers already in ``tower``, first block first."""
    return [b.attn for b in blocks(model, tower) if isinstance(b.attn, ResidualPrefixAttention)]


def uninstall(model: nn.Module) -> None:
    """Put the original attention back in every wrapped block of both towers."""
    for tower in ("vision", "text"):
        for block in blocks(model, tower):
            if isinstance(block.attn, ResidualPrefixAttention):
                block.attn = block.attn.attention


@contextmanager
def routed(modules: list[ResidualPrefixAttention], ids: torch.Tensor,
           weight: torch.Tensor | None) -> Iterator[None]:
    """Within the block, ``modules`` attend to prefixes ``ids`` scaled by ``weight``."""
    for m in modules:
        m.route = (ids, weight)
    try:
        yield
    finally:
        for m in modules:
            m.route = None


__all__ = ["ResidualPrefixAttention", "blocks", "install", "installed", "routed", "uninstall"]
