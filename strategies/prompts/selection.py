"""Prompt pools chosen by key–query matching (L2P §4.2; DualPrompt §4.2).

Each prompt of a pool has a learnable key ``k_i`` (D,). An image's query ``q(x)`` is the
frozen, unprompted model's [CLS] feature; the pool's similarity is the cosine
``γ(q, k_i)`` (L2P eq. 3), the N most similar prompts are used (top-k), and the surrogate
loss pulls the chosen keys to their queries: ``−Σ_{s} γ(q(x), k_s) / B`` (L2P eq. 5,
``reduce_sim`` of the references' ``prompt.py``). With ``batchwise_prompt`` the N prompts
chosen most often in the batch serve every image of it (the references' JAX-compatible
majority vote: ``torch.topk`` over the same padded count array, so ties break as theirs).
"""

from __future__ import annotations

import torch
from torch import nn


def l2_normalize(x: torch.Tensor, dim: int = -1, epsilon: float = 1e-12) -> torch.Tensor:
    """``x / max(‖x‖², ε)^½`` along ``dim`` (the references' ``l2_normalize``)."""
    square_sum = torch.sum(x ** 2, dim=dim, keepdim=True)
    return x * torch.rsqrt(torch.clamp(square_sum, min=epsilon))


def similarity(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Cosine similarity (B, M) of queries (B, D) with keys (M, D)."""
    return l2_normalize(query) @ l2_normalize(keys).T


def select(sim: torch.Tensor, top_k: int, *, batchwise: bool = False) -> torch.Tensor:
    """Indices (B, top_k) of the chosen prompts from similarities (B, M).

    ``batchwise``: the ``top_k`` prompts chosen most often over the batch, for every image
    (the references' array of sorted chosen ids padded to M with ``min(idx)`` at count 0,
    and ``torch.topk`` over its counts, so count ties break as in the references).
    """
    idx = torch.topk(sim, k=top_k, dim=1).indices
    if not batchwise:
        return idx
    pool = sim.shape[1]
    counts = torch.bincount(idx.flatten(), minlength=pool)
    present = counts > 0
    ids = torch.cat([torch.nonzero(present).flatten(),
                     torch.full((int((~present).sum()),), int(idx.min()), device=sim.device)])
    padded = torch.cat([counts[present], counts.new_zeros(int((~present).sum()))])
    major = ids[torch.topk(padded, k=top_k).indices]
    return major.expand(sim.shape[0], -1).contiguous()


def pull_constraint(query: torch.Tensor, keys: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``Σ_{b,s} γ(q_b, k_{idx[b,s]}) / B``: the quantity L2P's surrogate loss maximises.

    Parameters
    ----------
    query : torch.Tensor, shape (B, D)
    keys : torch.Tensor, shape (M, D)
    idx : torch.Tensor, shape (B, N)
    """
    chosen = l2_normalize(keys)[idx]  # (B, N, D)
    return torch.sum(chosen * l2_normalize(query).unsqueeze(1)) / query.shape[0]


def uniform_(shape: tuple[int, ...], generator: torch.Generator) -> nn.Parameter:
    """A parameter drawn from U(−1, 1), the references' ``prompt_init='uniform'``."""
    return nn.Parameter(torch.rand(shape, generator=generator) * 2 - 1)


class PromptPool(nn.Module):
    """A pool of M prompts with keys (L2P's ``Prompt``, DualPrompt's ``EPrompt``).

    Parameters
    ----------
    prompt_shape : tuple of int
        Shape of one prompt: (L_p, D) for prompt-tuning; (layers, 2, L_p, D) for prefix
        prompts (key and value halves per layer).
    pool_size : int
        M.
    key_dim : int
        D of the keys (the query's width).
    generator : torch.Generator
        Draws the U(−1, 1) initialisation of prompts and keys.

    Attributes
    ----------
    prompts : nn.Parameter, shape (M, *prompt_shape)
    keys : nn.Parameter, shape (M, key_dim)
    """

    def __init__(self, prompt_shape: tuple[int, ...], pool_size: int, key_dim: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.prompts = uniform_((pool_size, *prompt_shape), generator)
        self.keys = uniform_((pool_size, key_dim), generator)

    def forward(self, query: torch.Tensor, top_k: int, *, batchwise: bool = False,
                forced: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Chosen prompts (B, N, *prompt_shape) and the pull-constraint term (a scalar).

        ``forced`` (B, N) replaces the matched indices (DualPrompt's ``prompt_mask``);
        the term then pulls the forced keys, as the references do.
        """
        idx = select(similarity(query, self.keys), top_k, batchwise=batchwise)
        if forced is not None:
            idx = forced
        return self.prompts[idx], pull_constraint(query, self.keys, idx)


__all__ = ["PromptPool", "l2_normalize", "pull_constraint", "select", "similarity", "uniform_"]
