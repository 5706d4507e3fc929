"""Mixture of adapter experts with per-task noisy top-k routers and activate-freeze.

MoE-Adapters (Yu et al., CVPR 2024, "Incremental Mixture-of-Experts Adapters";
reference ``JiazuoYu/MoE-Adapters4CL`` @ 4572d97, ``mtil/clip/model.py`` and
``mtil/clip/adapter.py``): every residual block holds ``E`` bottleneck adapters
(experts) and, per task t, a router ``(W_gᵗ, W_nᵗ)``.
For a sample whose routing token (the first token of the sequence after the block's
attention: CLS for images, start-of-text for texts) is ``c``:

``gates = Softmax(TopK(c·W_g + ε ⊙ (Softplus(c·W_n) + 10⁻²)))``, ``y = Σ_i gates_i · E_i(x)``

with Gaussian noise ε during training only (noisy top-k gating, Shazeer et al.,
ICLR 2017, Eq. 3–5), and the block output ``x + MLP(LN₂(x)) + y``
(see :mod:`strategies.adaptation.moe_blocks`). Activate-freeze (same section):
while a task trains, each block counts how many samples every expert receives;
after the task the two most chosen experts of each block stop training for all
later tasks (reference ``mtil/src/models/finetune.py`` l. 194–220 writes them to the
frozen list; l. 90–103 excludes them from the next task's optimiser).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Adapter(nn.Module):
    """Bottleneck adapter ``E(x) = s · W_up · Dropout(ReLU(W_down·x + b_d)) + b_u``.

    As the reference ``Adapter`` with ``adapter_layernorm_option='none'`` and
    ``init_option='lora'`` (``adapter.py`` l. 11–69): ``W_down`` Kaiming-uniform
    (a = √5), ``W_up`` and both biases zero, so a fresh expert outputs 0. The
    reference hard-codes the down projection's width to 64 (``nn.Linear(n_embd, 64)``);
    its runs use ``bottleneck = 64``.

    Parameters
    ----------
    dim : int
        Width D of the residual stream.
    bottleneck : int
        Hidden width r.
    dropout : float
        Dropout on the hidden activation (training only); 0.1 in the reference.
    scale : float
        Output scale s; 0.1 in the reference.
    """

    def __init__(self, dim: int, bottleneck: int, *, dropout: float, scale: float) -> None:
        super().__init__()
        self.down_proj = nn.Linear(dim, bottleneck)
        self.up_proj = nn.Linear(bottleneck, dim)
        self.dropout, self.scale = dropout, scale
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.down_proj.weight, a=math.sqrt(5))
            nn.init.zeros_(self.up_proj.weight)
            nn.init.zeros_(self.down_proj.bias)
            nn.init.zeros_(self.up_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) → (..., D)."""
        hidden = F.dropout(F.relu(self.down_proj(x)), p=self.dropout, training=self.training)
        return self.up_proj(hidden) * self.scale


def noisy_top_k_gating(
    x: torch.Tensor, w_gate: torch.Tensor, w_noise: torch.Tensor, *, top_k: int,
    noise: torch.Tensor | None, noise_epsilon: float = 1e-2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse gates and expert load of noisy top-k gating (Shazeer et al. 2017, §2.1, App. A).

    ``H = x·W_g + ε ⊙ (Softplus(x·W_n) + noise_epsilon)`` when ``noise`` ε is given,
    else ``H = x·W_g``; ``gates = scatter(Softmax(top-k of H))``. The load is the
    smooth estimator ``Σ_x P(x, i)`` of Eq. 8–10 (probability that expert i stays in
    the top k under a new noise draw) when noisy and ``k < E``, else the count of
    samples with a non-zero gate. Reference: ``model.py`` l. 396–460.

    Parameters
    ----------
    x : (B, D) routing tokens
    w_gate, w_noise : (D, E)
    top_k : int in [1, E]
    noise : (B, E) standard-normal draws, or None for clean (evaluation) gating
    noise_epsilon : float
        Floor added to the noise scale.

    Returns
    -------
    gates : (B, E), exactly ``top_k`` non-zeros per row, rows summing to 1
    load : (E,)
    """
    experts = w_gate.shape[1]
    if not 1 <= top_k <= experts:
        raise ValueError(f"top_k must be in [1, {experts}] (the number of experts), got {top_k}.")
    clean = x @ w_gate.to(x)
    if noise is not None:
        if noise.shape != clean.shape:
            raise ValueError(
                f"noise must have shape {tuple(clean.shape)}, got {tuple(noise.shape)}.")
        std = F.softplus(x @ w_noise.to(x)) + noise_epsilon
        logits = clean + noise.to(clean) * std
    else:
        logits = clean
    top_logits, top_indices = logits.topk(min(top_k + 1, experts), dim=1)
    top_gates = F.softmax(top_logits[:, :top_k], dim=1)
    gates = torch.zeros_like(logits).scatter(1, top_indices[:, :top_k], top_gates)
    if noise is not None and top_k < experts:
        # the k-th largest noisy logit with / without expert i (App. A, Eq. 9)
        threshold_in = top_logits[:, top_k : top_k + 1]
        threshold_out = top_logits[:, top_k - 1 : top_k]
        normal = torch.distributions.Normal(clean.new_zeros(()), clean.new_ones(()))
        prob = torch.where(logits > threshold_in, normal.cdf((clean - threshold_in) / std),
                           normal.cdf((clean - threshold_out) / std))
        return gates, prob.sum(0)
    return gates, (gates > 0).sum(0)


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation ``Var(x) / (mean(x)² + 1e−10)`` (unbiased variance).

    0 for a single value. Shazeer et al. 2017, Eq. 7; reference ``model.py`` l. 369–384.
    """
    if x.numel() == 1:
        return x.new_zeros((), dtype=torch.float32)
    x = x.float()
    return x.var() / (x.mean() ** 2 + 1e-10)


def balance_loss(gates: torch.Tensor, load: torch.Tensor) -> torch.Tensor:
    """``CV²(Σ_x gates) + CV²(load)`` (Shazeer et al. 2017, Eq. 6–7 and App. A, Eq. 11).

    The reference computes this (times 1e−2) in every block (``model.py`` l. 481–483)
    but never adds it to the training loss; a strategy may add it with its own weight.
    """
    return cv_squared(gates.sum(0)) + cv_squared(load)


class MixtureOfAdapters(nn.Module):
    """``E`` adapter experts, one router per task, activation counts and a frozen mask.

    Parameters
    ----------
    dim : int
        Width D of the residual stream.
    experts : int
        Number of experts E (22 in the reference MTIL runs).
    top_k : int
        Experts per sample (2).
    bottleneck, dropout, scale :
        Of every :class:`Adapter` (64, 0.1, 0.1).
    noise_epsilon : float
        Floor of the router's noise scale (1e−2).

    Attributes
    ----------
    experts : nn.ModuleList of Adapter
    gates, noise : nn.ParameterList
        ``W_gᵗ`` and ``W_nᵗ`` (D, E) of every task's router, zero-initialised when added.
    activations : (E,) float32 buffer
        Samples routed to each expert in training forwards since the last reset
        (the reference's ``choose_map``; not saved in the state dict).
    frozen : (E,) bool buffer
        Experts excluded from training (activate-freeze).
    generator : torch.Generator or None
        Source of the routing noise; None draws from torch's global generator.
    last_balance_loss : scalar tensor or None
        :func:`balance_loss` of the last training forward.
    """

    def __init__(
        self, dim: int, *, experts: int, top_k: int, bottleneck: int, dropout: float,
        scale: float, noise_epsilon: float = 1e-2,
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k must be in [1, experts={experts}], got {top_k}.")
        self.dim, self.top_k, self.noise_epsilon = dim, top_k, noise_epsilon
        self.experts = nn.ModuleList(
            Adapter(dim, bottleneck, dropout=dropout, scale=scale) for _ in range(experts))
        self.gates = nn.ParameterList()
        self.noise = nn.ParameterList()
        self.register_buffer("activations", torch.zeros(experts), persistent=False)
        self.register_buffer("frozen", torch.zeros(experts, dtype=torch.bool))
        self.generator: torch.Generator | None = None
        self.last_balance_loss: torch.Tensor | None = None

    @property
    def n_experts(self) -> int:
        return len(self.experts)

    def add_router(self) -> int:
        """Append a zero router for a new task, freeze the earlier ones; return its index."""
        for p in (*self.gates, *self.noise):
            p.requires_grad_(False)
        like = self.frozen.new_zeros((self.dim, self.n_experts), dtype=torch.float32)
        self.gates.append(nn.Parameter(like.clone()))
        self.noise.append(nn.Parameter(like.clone()))
        return len(self.gates) - 1

    def route(self, tokens: torch.Tensor, router: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Gates (B, E) and load (E,) of router ``router`` for routing tokens (B, D)."""
        if not 0 <= router < len(self.gates):
            raise ValueError(
                f"router {router} does not exist; {len(self.gates)} routers were added.")
        noise = None
        if self.training:
            shape = (tokens.shape[0], self.n_experts)
            if self.generator is None:
                noise = torch.randn(shape, dtype=tokens.dtype, device=tokens.device)
            else:
                noise = torch.randn(shape, generator=self.generator, device=self.generator.device,
                                    dtype=tokens.dtype).to(tokens.device)
        return noisy_top_k_gating(tokens, self.gates[router], self.noise[router], top_k=self.top_k,
                                  noise=noise, noise_epsilon=self.noise_epsilon)

    def forward(self, x: torch.Tensor, router: int) -> torch.Tensor:
        """``y_b = Σ_i gates[b, i] · E_i(x_b)`` for sequences x (B, L, D), routed by ``x[:, 0]``.

        Only the selected experts run, on their own samples (as the reference's
        ``SparseDispatcher``); contributions are summed in float32 in increasing
        expert order. In training mode the activation counts grow and
        :attr:`last_balance_loss` is set.
        """
        gates, load = self.route(x[:, 0], router)
        chosen = gates > 0
        if self.training:
            self.activations += chosen.sum(0).to(self.activations)
            self.last_balance_loss = balance_loss(gates, load)
        rows = torch.nonzero(chosen.T)[:, 1]  # samples of expert 0, then of expert 1, ...
        out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        start = 0
        for i, count in enumerate(chosen.sum(0).tolist()):
            if count:
                mine = rows[start : start + count]
                contribution = self.experts[i](x[mine]) * gates[mine, i, None, None]
                out.index_add_(0, mine, contribution.float())
                start += count
        return out.to(x.dtype)

    def reset_activations(self) -> None:
        """Zero the activation counts (at the start of a task)."""
        self.activations.zero_()

    def freeze_most_activated(self, n: int = 2) -> list[int]:
        """Freeze the ``n`` experts with the most activations of this task; return them.

        ``torch.topk(counts, n)`` as the reference (``finetune.py`` l. 199–200, n = 2);
        experts frozen by earlier tasks stay frozen (the reference's list only grows).
        """
        if not 1 <= n <= self.n_experts:
            raise ValueError(f"n must be in [1, {self.n_experts}], got {n}.")
        chosen = torch.topk(self.activations, n).indices.tolist()
        self.frozen[chosen] = True
        self.apply_frozen()
        return chosen

    def apply_frozen(self) -> None:
        """Set ``requires_grad`` of every expert from :attr:`frozen`."""
        for expert, frozen in zip(self.experts, self.frozen.tolist(), strict=True):
            expert.requires_grad_(not frozen)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters a task trains: the newest router and the experts not frozen."""
        if not len(self.gates):
            raise ValueError("add a router (add_router) before training.")
        params = [self.gates[-1], self.noise[-1]]
        for expert, frozen in zip(self.experts, self.frozen.tolist(), strict=True):
            if not frozen:
                params += list(expert.parameters())
        return params
