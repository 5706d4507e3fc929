"""CODA-Prompt's decomposed prompts: components, keys and attention vectors per layer.

Smith et al., CVPR 2023, §4 (``GT-RIPL/CODA-Prompt`` ``models/zoo.py:CodaPrompt``). A
layer's prompt is a weighted sum of components ``P = Σ_m α_m P_m`` with
``α_m = γ(q ⊙ A_m, K_m)`` (eq. 3–5: the query is attended by the component's vector
``A_m`` and compared with its key ``K_m`` by cosine). The first half of ``P``'s L_p
tokens are prefix keys, the second half prefix values. The M components are split evenly
over the T tasks: task t trains its ``M/T`` components and uses the earlier ones frozen
(the reference's ``detach``); at evaluation after task t, all components of tasks ≤ t are
used. Each task's components start from a Gram–Schmidt orthonormalisation against all
earlier ones (the reference's ``gram_schmidt``, the "Important notice" of its README).

Here each task's components are their own parameters (``blocks[t]``), so the optimiser
holds only the task's own components; the reference holds all M in one tensor and
detaches the old ones, which gives the same updates (Adam with zero gradient and zero
weight decay leaves a weight unchanged, and the optimiser is re-created every task).
"""

from __future__ import annotations

import torch
from torch import nn

from strategies.prompts.losses import ortho_penalty


def gram_schmidt(existing: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` new unit vectors orthogonal to each other and to the rows of ``existing``.

    Classical Gram–Schmidt on Gaussian draws, as the reference (a draw whose projection
    basis has a vanishing norm, ``< 1e-8``, is redrawn).

    Parameters
    ----------
    existing : torch.Tensor, shape (S, F)
        Rows already in place (earlier tasks' components, flattened).
    count : int
        Rows to add.
    generator : torch.Generator
        Draws the Gaussian vectors (the reference: ``torch.randn_like``, global RNG).

    Returns
    -------
    torch.Tensor, shape (count, F)
    """
    basis = [row for row in existing]
    new: list[torch.Tensor] = []
    for _ in range(count):
        while True:
            v = torch.randn(existing.shape[1], generator=generator, dtype=existing.dtype)
            u = torch.zeros_like(v)
            ok = True
            for b in basis + new:
                denominator = (b * b).sum()
                if denominator < 1e-8:
                    ok = False
                    break
                u = u + (v * b).sum() / denominator * b
            if ok:
                break
        new.append(v - u)
    return torch.stack([r / r.norm() for r in new]) if new else existing.new_zeros(0, existing.shape[1])


class CodaBlock(nn.Module):
    """One task's components of every prompted layer.

    Attributes
    ----------
    prompts : nn.Parameter, shape (layers, n, L_p, D)
    keys, attention : nn.Parameter, shape (layers, n, D)
    """

    def __init__(self, layers: int, n: int, length: int, width: int) -> None:
        super().__init__()
        self.prompts = nn.Parameter(torch.zeros(layers, n, length, width))
        self.keys = nn.Parameter(torch.zeros(layers, n, width))
        self.attention = nn.Parameter(torch.zeros(layers, n, width))


class CodaPool(nn.Module):
    """Components of all tasks, ``blocks[t]`` being task t's (see module docstring).

    Parameters
    ----------
    layers : int
        Number of prompted blocks.
    tasks : int
        T, the stream's length.
    pool_size : int
        M (>= T); each task gets ``M // T`` components (the reference's ``int(M / T)``).
    length, width : int
        L_p and D.
    """

    def __init__(self, layers: int, tasks: int, pool_size: int, length: int, width: int) -> None:
        super().__init__()
        if pool_size < tasks:
            raise ValueError(f"coda-prompt needs pool_size >= the stream's {tasks} tasks "
                             f"(M // T components per task), got pool_size={pool_size}.")
        self.per_task = pool_size // tasks
        self.blocks = nn.ModuleList(CodaBlock(layers, self.per_task, length, width)
                                    for _ in range(tasks))

    def initialise(self, task: int, generator: torch.Generator) -> None:
        """Gram–Schmidt initialisation of task ``task``'s components (before it trains).

        As the reference's ``process_task_count``: per layer, first the keys, then the
        attention vectors, then the (flattened) prompts of the task are orthonormalised
        against those of tasks ``< task``.
        """
        block = self.blocks[task]
        with torch.no_grad():
            for layer in range(block.keys.shape[0]):
                for name in ("keys", "attention", "prompts"):
                    old = torch.cat([getattr(b, name)[layer].reshape(self.per_task, -1)
                                     for b in self.blocks[:task]]) if task else \
                        getattr(block, name)[layer].reshape(self.per_task, -1)[:0]
                    new = gram_schmidt(old.float(), self.per_task, generator)
                    getattr(block, name)[layer].copy_(new.view_as(getattr(block, name)[layer]))

    def components(self, layer: int, upto: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys (m, D), attention vectors (m, D) and prompts (m, L_p, D) of tasks ``0 … upto``."""
        blocks = self.blocks[:upto + 1]
        return (torch.cat([b.keys[layer] for b in blocks]),
                torch.cat([b.attention[layer] for b in blocks]),
                torch.cat([b.prompts[layer] for b in blocks]))


def coda_prefix(query: torch.Tensor, keys: torch.Tensor, attention: torch.Tensor,
                prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefix keys and values (B, L_p/2, D) of one layer (CODA-Prompt eq. 3–5).

    ``α = cos(q ⊙ A_m, K_m)`` (B, m); ``P = Σ_m α_m P_m`` (B, L_p, D); keys are its first
    half, values its second.
    """
    attended = torch.nn.functional.normalize(torch.einsum("bd,kd->bkd", query, attention), dim=2)
    alpha = torch.einsum("bkd,kd->bk", attended, torch.nn.functional.normalize(keys, dim=1))
    mixed = torch.einsum("bk,kld->bld", alpha, prompts)
    half = prompts.shape[1] // 2
    return mixed[:, :half], mixed[:, half:]


def coda_ortho_loss(keys: torch.Tensor, attention: torch.Tensor, prompts: torch.Tensor
                    ) -> torch.Tensor:
    """``ortho(K) + ortho(A) + ortho(P)`` of one layer's components in use (eq. 6)."""
    return (ortho_penalty(keys) + ortho_penalty(attention)
            + ortho_penalty(prompts.reshape(prompts.shape[0], -1)))


__all__ = ["CodaBlock", "CodaPool", "coda_ortho_loss", "coda_prefix", "gram_schmidt"]
