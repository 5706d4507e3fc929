"""CoDyRA's gated LoRA linear layer, its proximal step and its threshold schedule.

Reference: Lu et al., arXiv 2412.01004, v1 "Adaptive Rank, Reduced Forgetting:
Knowledge Retention in Continual Learning Vision-Language Models with Dynamic
Rank-Selective LoRA" (later versions: "Take Only What You Need: Rank
Minimization as an Implicit Forgetting Regularizer in Continual Learning").
Public code Artificer-AI-Lab/CoDyRA was read for the details below; no code
was copied.

The gated module is our own small ``nn.Module`` rather than a peft layer: peft's
``LoraLayer`` has no per-rank weight, and the closest peft construct, AdaLoRA's
``SVDLinear`` (B·diag(E)·A), initialises E to zero, scales by
``lora_alpha / (ranknum + 1e-5)`` (never exactly 1), adds an orthogonality
penalty and prunes by a global budget schedule — none of which is CoDyRA's
update rule. Plain LoRA (:mod:`strategies.lora.plain`) does use peft.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

ThresholdRule = Literal["paper", "code"]


class GatedLoRALinear(nn.Module):
    """A frozen linear layer plus a rank-gated low-rank update (the paper's CoDyRA layer).

    ``y = W₀x + b + B·diag(g)·A·x`` with A (r×in) Kaiming-uniform (a=√5, as
    ``nn.Linear``), B (out×r) zero and one importance weight gᵢ ~ N(0, 1) per rank;
    scale 1 (no α/r factor), as in the reference code.

    Parameters
    ----------
    base_layer : nn.Linear
        The frozen layer W₀ (kept as is; its parameters are not trained).
    rank : int
        Number of rank-one components r.
    generator : torch.Generator or None
        CPU generator for A's and g's initialisation (reproducible runs).
    """

    def __init__(
        self, base_layer: nn.Linear, rank: int, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be a positive integer, got {rank}.")
        self.base_layer = base_layer
        base_layer.requires_grad_(False)
        weight = base_layer.weight
        a = torch.empty(rank, base_layer.in_features)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        gate = torch.randn(rank, generator=generator)
        self.lora_A = nn.Parameter(a.to(device=weight.device, dtype=weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base_layer.out_features, rank,
                                               device=weight.device, dtype=weight.dtype))
        self.gate = nn.Parameter(gate.to(device=weight.device, dtype=weight.dtype))

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight W₀ (open_clip reads ``c_fc.weight.dtype``)."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The frozen base bias."""
        return self.base_layer.bias

    @property
    def rank(self) -> int:
        """Allocated rank r."""
        return self.gate.numel()

    def kept_rank(self) -> int:
        """Number of rank-one components whose gate is not exactly zero."""
        return int(torch.count_nonzero(self.gate.detach()))

    def delta_weight(self) -> torch.Tensor:
        """The update ΔW = B·diag(g)·A, shape (out, in); zero-gated ranks contribute nothing."""
        return (self.lora_B * self.gate) @ self.lora_A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (..., in) → (..., out)."""
        low = nn.functional.linear(x, self.lora_A) * self.gate
        return self.base_layer(x) + nn.functional.linear(low, self.lora_B)

    def merged(self) -> nn.Linear:
        """The base layer with ΔW folded in (``W ← W + B·diag(g)·A``), frozen.

        Ranks with g = 0 are dropped: only kept components enter the sum.
        """
        keep = self.gate.detach() != 0
        with torch.no_grad():
            delta = (self.lora_B[:, keep] * self.gate[keep]) @ self.lora_A[keep]
            self.base_layer.weight.add_(delta.to(self.base_layer.weight.dtype))
        return self.base_layer


def soft_threshold(x: torch.Tensor, kappa: float, rule: ThresholdRule = "paper") -> torch.Tensor:
    """Proximal operator of ``kappa·‖x‖₁``, applied element-wise.

    ``rule="paper"``: T_κ(x) = sign(x)·max(|x| − κ, 0) (the paper's
    proximal step on the L1 penalty λ·‖g‖₁ of the importance weights).

    ``rule="code"``: the public code's variant (Artificer-AI-Lab/CoDyRA @ c1691e4,
    ``models/codyra.py``, end of ``train_model``): entries with ``x > κ`` lose κ,
    entries with ``x < −κ`` gain κ, *then* entries whose magnitude is below κ
    become 0. In effect ``|x| < κ → 0``, ``|x| = κ → x`` (neither shifted nor
    below κ: kept as is), ``κ < |x| < 2κ → 0`` and ``|x| ≥ 2κ → sign(x)(|x| − κ)``:
    harder pruning for the same κ.

    Parameters
    ----------
    x : torch.Tensor
        Any shape.
    kappa : float
        Threshold κ ≥ 0.
    rule : {"paper", "code"}

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``x``.
    """
    if kappa < 0:
        raise ValueError(f"soft-threshold kappa must be >= 0, got {kappa}.")
    if rule == "paper":
        return torch.sign(x) * torch.clamp(x.abs() - kappa, min=0.0)
    if rule == "code":
        shifted = torch.where(x > kappa, x - kappa, torch.where(x < -kappa, x + kappa, x))
        return torch.where(shifted.abs() < kappa, torch.zeros_like(shifted), shifted)
    raise ValueError(f"threshold rule must be 'paper' or 'code', got {rule!r}.")


def kappa_at(
    iteration: int, total: int, max_kappa: float, *, steps: int = 50, dense_fraction: float = 0.5
) -> float:
    """Threshold κ used after optimiser step ``iteration`` (0-based) of a task; 0 = no pruning.

    The reference schedule: the first ``dense_fraction·total`` iterations are
    dense (no thresholding). After them, κ walks up ``linspace(0, max_kappa,
    steps)``: it moves one grid point at every iteration ``j ≥ dense`` with
    ``j % s == 0``, where ``s = (total − dense) // steps`` iterations per step, and
    stays at ``max_kappa`` once reached. Thresholding applies to iterations
    ``> dense``. Where ``total − dense < steps`` the reference's ``s`` is 0 and
    it never prunes; we use ``s = 1`` instead so short runs still select ranks.
    The values are the reference's grid to the bit (``np.linspace``'s arithmetic).

    Examples
    --------
    >>> kappa_at(250, 500, 0.005)   # last dense iteration
    0.0
    >>> round(kappa_at(251, 500, 0.005) * 49 / 0.005, 6)   # first grid point
    1.0
    >>> kappa_at(499, 500, 0.005)
    0.005
    """
    dense = dense_fraction * total
    if iteration <= dense or max_kappa == 0:
        return 0.0
    per_step = max(1, int((total - dense) // steps))
    first = math.ceil(dense)
    moves = min(steps - 1, iteration // per_step - (first - 1) // per_step)
    # the grid value exactly as np.linspace computes it (k · (max / (steps − 1)), last = max)
    return max_kappa if moves == steps - 1 else moves * (max_kappa / (steps - 1))
