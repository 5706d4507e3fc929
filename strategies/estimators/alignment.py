"""Classifier alignment (CA): retrain a linear head on features sampled from class Gaussians.

The CA step of SLCA (Zhang et al., "SLCA: Slow Learner with Classifier
Alignment for Continual Learning on a Pre-trained Model", ICCV 2023, Sec. 4.2;
reference github.com/GengDavid/SLCA, ``models/slca.py``,
``_stage2_compact_classifier``). After a task, every class seen so far is
modelled as ``N(μ_c, Σ_c)``; for each of ``epochs`` epochs:

1. draw ``samples_per_class`` pseudo-features per class from
   ``N(s_c·μ_c, Σ_c + εI)``, where ``s_c = 0.9 + 0.1·(t_c + 1)/(T + 1)`` with
   ``t_c`` the task of class ``c`` and ``T`` the current task (``mean_decay``;
   the reference's ``decay``), and ``ε = 1e-4`` the jitter the reference adds in
   ``_compute_class_mean``;
2. shuffle them and take ``C`` mini-batches of ``samples_per_class``;
3. per batch, the logits ``z = W·x + b`` are divided by ``τ · mean_t ‖z_t‖₂``
   (``z_t``: the logits of task ``t``'s classes; ``τ = logit_norm``, 0.1) and
   trained with cross-entropy by SGD (momentum 0.9, weight decay 5e-4,
   learning rate 0.01 with cosine annealing over the epochs).

:func:`align_classifier` is pure: it returns a new head and leaves its inputs
alone. Randomness comes from ``generator`` only, drawn in the reference's order
(per epoch: each class's normal draws, then one permutation), so with
``torch.manual_seed(s)`` there and ``torch.Generator().manual_seed(s)`` here the
two give the same head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check(weight: torch.Tensor, bias: torch.Tensor, means: torch.Tensor,
           covariances: torch.Tensor, class_task: torch.Tensor) -> None:
    C, D = weight.shape
    expected = {"bias": (bias, (C,)), "means": (means, (C, D)),
                "covariances": (covariances, (C, D, D)), "class_task": (class_task, (C,))}
    for name, (value, shape) in expected.items():
        if tuple(value.shape) != shape:
            raise ValueError(f"align_classifier {name} has shape {tuple(value.shape)}; expected "
                             f"{shape} for a head of {C} classes and {D} features.")


def align_classifier(
    weight: torch.Tensor,
    bias: torch.Tensor,
    means: torch.Tensor,
    covariances: torch.Tensor,
    class_task: torch.Tensor,
    *,
    generator: torch.Generator,
    epochs: int = 5,
    samples_per_class: int = 256,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    logit_norm: float | None = 0.1,
    mean_decay: bool = True,
    jitter: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SLCA's classifier alignment of a linear head ``z = x·Wᵀ + b``.

    Parameters
    ----------
    weight : Tensor, shape (C, D)
        Head to start from (SLCA: the head trained on the task).
    bias : Tensor, shape (C,)
    means : Tensor, shape (C, D)
        Class means of every class seen so far, in head order.
    covariances : Tensor, shape (C, D, D)
        Class covariances (``torch.cov``, ``n − 1`` normalised, as the reference).
    class_task : Tensor of int, shape (C,)
        Task index of each class; the largest is the current task ``T``.
    generator : torch.Generator
        Source of the pseudo-features and of the shuffling.
    epochs, samples_per_class, lr, momentum, weight_decay
        Reference: 5, 256, 0.01, 0.9, 5e-4.
    logit_norm : float or None
        ``τ`` of the logit normalisation (reference: 0.1); ``None``: plain cross-entropy.
    mean_decay : bool
        Scale old classes' means by ``s_c`` (see module docstring), as the reference.
    jitter : float
        ``ε`` added to every covariance's diagonal.

    Returns
    -------
    (weight, bias) : Tensors of shapes (C, D) and (C,), float32
        The aligned head (new tensors).
    """
    _check(weight, bias, means, covariances, class_task)
    if epochs < 0 or samples_per_class < 1:
        raise ValueError(f"align_classifier needs epochs >= 0 and samples_per_class >= 1, got "
                         f"{epochs} and {samples_per_class}.")
    if logit_norm is not None and not logit_norm > 0:
        raise ValueError(f"align_classifier logit_norm must be > 0 or None, got {logit_norm}.")
    C, D = weight.shape
    task = class_task.long()
    current = int(task.max())
    tasks = torch.unique(task)
    scale = 0.9 + (task + 1).double() / (current + 1) * 0.1 if mean_decay else torch.ones(C)
    loc = (means.double() * scale[:, None]).float()
    tril = torch.linalg.cholesky((covariances.double() + jitter * torch.eye(D)).float())
    W = weight.detach().clone().float().requires_grad_(True)
    b = bias.detach().clone().float().requires_grad_(True)
    optimizer = torch.optim.SGD([W, b], lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    labels = torch.arange(C).repeat_interleave(samples_per_class)
    for _ in range(epochs):
        draws = [loc[c] + (tril[c] @ torch.empty(samples_per_class, D).normal_(generator=generator)
                           .unsqueeze(-1)).squeeze(-1) for c in range(C)]
        order = torch.randperm(C * samples_per_class, generator=generator)
        inputs, targets = torch.cat(draws)[order], labels[order]
        for i in range(C):
            x = inputs[i * samples_per_class:(i + 1) * samples_per_class]
            logits = x @ W.T + b
            if logit_norm is not None:
                norms = torch.stack([logits[:, task == t].norm(p=2, dim=-1) + 1e-7 for t in tasks], -1)
                logits = logits / norms.mean(-1, keepdim=True) / logit_norm
            loss = F.cross_entropy(logits, targets[i * samples_per_class:(i + 1) * samples_per_class])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    return W.detach(), b.detach()
