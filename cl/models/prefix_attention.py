"""Attention with prefix keys and values, through a frozen open_clip block's own weights.

Prefix-tuning (Li & Liang 2021; DualPrompt, CODA-Prompt) concatenates learned keys and values
to a layer's; DIKI (Tang et al. 2024) adds a second, residual attention over them. Both run
on the block's packed ``nn.MultiheadAttention`` weights, so the pre-trained tower stays
untouched. :mod:`cl.models.tokens` drives these per block across a tower and re-exports
every public name here.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Prefix(NamedTuple):
    """Prefix keys and values of one attention layer (Li & Liang 2021, eq. 2 of DualPrompt).

    Attributes
    ----------
    key, value : torch.Tensor, shape (B, P, D) or (P, D)
        Concatenated in front of the layer's keys and values *after* the input projection
        (as ``PreT_Attention`` of dualprompt-pytorch and CODA-Prompt's ``Attention``):
        the queries of every token also attend to the P prefix positions. ``D`` is the
        tower's width, split into heads as the layer splits its own keys. A (P, D)
        prefix is shared by the batch.
    """

    key: torch.Tensor
    value: torch.Tensor


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, D) → (B, heads, L, D / heads)."""
    b, length, d = x.shape
    return x.view(b, length, heads, d // heads).transpose(1, 2)


PREFIX_MODES: tuple[str, ...] = ("concat", "residual")
"""How prefixes enter attention: ``"concat"`` (prefix-tuning, one softmax over ``[p_k; k]``)
or ``"residual"`` (DIKI's residual attention, a second softmax over the prefixes alone)."""


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """An additive float mask (``-inf`` where a boolean mask is True), as open_clip's."""
    if mask is None or mask.dtype != torch.bool:
        return None if mask is None else mask.to(dtype)
    return torch.zeros_like(mask, dtype=dtype).masked_fill(mask, float("-inf"))


def prefix_attention(attn: nn.MultiheadAttention, x: torch.Tensor, prefix: Prefix | None, *,
                     mode: str = "concat", weight: torch.Tensor | float | None = None,
                     attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Self-attention of ``x`` through ``attn``'s own weights, with prefix keys and values.

    With ``q, k, v = x W_inᵀ + b_in`` split into heads (d_h per head), ``M`` the additive
    ``attn_mask`` (0 without one) and ``(p_k, p_v)`` the prefix, per head:

    * ``mode="concat"`` (prefix-tuning, Li & Liang 2021; DualPrompt eq. 2):
      ``softmax(q [p_k; k]ᵀ / √d_h + [0, M]) [p_v; v]`` — the computation of
      dualprompt-pytorch's ``PreT_Attention`` and CODA-Prompt's ``Attention``;
    * ``mode="residual"`` (DIKI, Tang et al. ECCV 2024, §3.2 eq. 3–5; ``lloongx/DIKI``
      ``clip/attention.py``): ``softmax(q kᵀ / √d_h + M) v + w · softmax(q p_kᵀ / √d_h) p_v``
      — the pre-trained attention untouched, plus an unmasked attention over the prefixes
      alone scaled per sample by ``weight`` ``w`` (1 when ``None``);

    then ``out_proj``, by :func:`torch.nn.functional.scaled_dot_product_attention`. Prefixes
    are not projected by ``W_k, W_v`` in either mode.

    Parameters
    ----------
    attn : nn.MultiheadAttention
        A block's attention (equal q/k/v dimensions, packed ``in_proj_weight``).
    x : torch.Tensor, shape (B, L, D)
        The normalised block input (``ln_1(x)``), batch first.
    prefix : Prefix or None
        Keys and values (B, P, D) or (P, D); ``None`` or P = 0 attends to ``x`` only.
    mode : {"concat", "residual"}
        See above (:data:`PREFIX_MODES`).
    weight : torch.Tensor of shape (B,) or (), float, or None
        ``w`` of ``mode="residual"``, per sample or one for the batch.
    attn_mask : torch.Tensor, shape (L, L), optional
        Additive float or boolean (True = masked) mask of the self part, e.g. the text
        tower's causal ``model.attn_mask``; prefix positions are never masked.

    Returns
    -------
    torch.Tensor, shape (B, L, D)

    Raises
    ------
    ValueError
        An unknown ``mode``, a ``weight`` with ``mode="concat"``, or shapes that do not fit.
    """
    if mode not in PREFIX_MODES:
        raise ValueError(f"prefix mode {mode!r} is not one of {list(PREFIX_MODES)}.")
    if weight is not None and mode != "residual":
        raise ValueError("a prefix weight scales the residual prefix term; use "
                         "mode='residual' or leave weight out.")
    if not attn._qkv_same_embed_dim or attn.in_proj_weight is None:
        raise TypeError("prefix attention needs nn.MultiheadAttention with packed q/k/v weights.")
    heads, batch = attn.num_heads, x.shape[0]
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    mask = _float_mask(attn_mask, q.dtype)
    dropout = attn.dropout if attn.training else 0.0
    pk = pv = None
    if prefix is not None:
        pk, pv = (p.unsqueeze(0).expand(batch, -1, -1) if p.dim() == 2 else p for p in prefix)
        if pk.shape != pv.shape or pk.shape[0] != batch or pk.shape[2] != x.shape[2]:
            raise ValueError(f"prefix key {tuple(pk.shape)} / value {tuple(pv.shape)} do not "
                             f"fit tokens {tuple(x.shape)}; give (B, P, D) or (P, D) with "
                             f"D = {x.shape[2]}.")
        pk, pv = pk.to(k.dtype), pv.to(v.dtype)
        if mode == "concat":
            k, v = torch.cat([pk, k], dim=1), torch.cat([pv, v], dim=1)
            mask = None if mask is None else F.pad(mask, (pk.shape[1], 0))
    qh = _heads(q, heads)
    out = F.scaled_dot_product_attention(qh, _heads(k, heads), _heads(v, heads),
                                         attn_mask=mask, dropout_p=dropout)
    if pk is not None and mode == "residual":
        extra = F.scaled_dot_product_attention(qh, _heads(pk, heads), _heads(pv, heads),
                                               dropout_p=dropout)
        if weight is not None:
            w = torch.as_tensor(weight, dtype=extra.dtype, device=extra.device)
            if w.numel() not in (1, batch):
                raise ValueError(f"prefix weight of shape {tuple(w.shape)} does not fit a "
                                 f"batch of {batch}; give (B,) or one number.")
            extra = extra * w.reshape(-1, 1, 1, 1)
        out = out + extra
    out = out.transpose(1, 2).reshape(x.shape)
    return attn.out_proj(out)


def block_forward(block: nn.Module, x: torch.Tensor, prefix: Prefix | None = None, *,
                  mode: str = "concat", weight: torch.Tensor | float | None = None,
                  attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One residual block on batch-first tokens (B, L, D), with an optional prefix.

    Without a prefix, or with an empty one (P = 0: attention over no extra keys is the
    same function), this is the block's own ``forward(x, attn_mask=attn_mask)``, bit for
    bit. With one, its attention is :func:`prefix_attention` (``mode``, ``weight``,
    ``attn_mask`` passed on) and the rest (``ln_1``, ``ls_1``, ``ln_2``, MLP, ``ls_2``) is
    the block's, as open_clip's ``ResidualAttentionBlock.forward``.
    :func:`prefix_attention` itself equals ``nn.MultiheadAttention`` to float32 rounding
    (another kernel order; measured ≤ 3e-7 on ``toy-clip``), not bit for bit.
    """
    if prefix is None or prefix.key.shape[-2] == 0:
        return block(x, attn_mask=attn_mask)
    attended = prefix_attention(block.attn, block.ln_1(x), prefix, mode=mode, weight=weight,
                                attn_mask=attn_mask)
    x = x + block.ls_1(attended)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


__all__ = ["PREFIX_MODES", "Prefix", "block_forward", "prefix_attention"]
