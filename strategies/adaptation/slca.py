"""SLCA's slow learner: a pretrained backbone fine-tuned at a fraction of its head's rate.

SLCA (Zhang et al., ICCV 2023, "Slow Learner"; reference ``GengDavid/SLCA`` @
169d4e6, ``models/slca.py``, ``convs/linears.py``) trains, task after task, the
backbone and a growing linear head with one SGD optimiser of two parameter groups:
the head at rate ``lr``, the backbone at ``lr · backbone_lr_scale`` (1/100 by
default, l. 45–48 and 154–166), momentum 0.9, weight decay 5e−4, step decay ×0.1 at
the milestones. Each task adds a linear head for its classes, freezes the earlier
ones, and its loss only covers the current task's logits (l. 127–128).

The second half of SLCA, classifier alignment with class-wise Gaussian
pseudo-features after each task ("Classifier Alignment", ``_stage2_compact_classifier`` l. 174–257),
is the shared alignment step of ``strategies/estimators/alignment.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def slow_learner_param_groups(
    backbone: Iterable[nn.Parameter], head: Iterable[nn.Parameter], *, lr: float,
    backbone_lr_scale: float = 0.01, weight_decay: float = 5e-4,
) -> list[dict]:
    """Optimiser parameter groups ``[backbone at lr·scale, head at lr]`` (reference l. 154–164).

    The backbone's parameters are set to require gradients (our backbones arrive frozen);
    with ``backbone_lr_scale = 0`` they are frozen instead and only the head's group is
    returned, as the reference's ``fix_bcb``. Head parameters that do not require
    gradients (earlier tasks' heads) are left out.

    Parameters
    ----------
    backbone, head : iterables of parameters
    lr : float > 0
        The head's learning rate (0.01 in the reference).
    backbone_lr_scale : float >= 0
        Backbone rate as a fraction of ``lr`` (``bcb_lrscale``, 1/100).
    weight_decay : float >= 0
        Of both groups (5e−4).
    """
    if not lr > 0 or backbone_lr_scale < 0 or weight_decay < 0:
        raise ValueError(
            f"need lr > 0, backbone_lr_scale >= 0, weight_decay >= 0; got lr={lr}, "
            f"backbone_lr_scale={backbone_lr_scale}, weight_decay={weight_decay}."
        )
    head_group = {"params": [p for p in head if p.requires_grad], "lr": lr,
                  "weight_decay": weight_decay}
    if backbone_lr_scale == 0:
        for p in backbone:
            p.requires_grad_(False)
        return [head_group]
    backbone_group = {"params": [p.requires_grad_(True) for p in backbone],
                      "lr": lr * backbone_lr_scale, "weight_decay": weight_decay}
    return [backbone_group, head_group]


def multistep_factor(epoch: int, milestones: Sequence[int], gamma: float = 0.1) -> float:
    """``γ^{#{m ∈ milestones : m ≤ epoch}}`` at 0-based epoch ``epoch``.

    ``torch.optim.lr_scheduler.MultiStepLR`` stepped after every epoch (reference
    l. 135 and 166: milestones [18] of 20 epochs on CIFAR-100, [40] of 50 elsewhere).
    """
    return gamma ** sum(1 for m in milestones if m <= epoch)


class ContinualLinearHead(nn.Module):
    """Linear heads, one per task, whose logits are concatenated in task order.

    Reference ``SimpleContinualLinear`` without layer norm or scales (``linears.py``
    l. 25–101): weights truncated-normal (std 0.02, cut at ±2), biases zero; adding a
    task freezes the heads of earlier tasks.

    Parameters
    ----------
    dim : int
        Feature width D.

    Attributes
    ----------
    heads : nn.ModuleList of nn.Linear
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.heads = nn.ModuleList()

    @property
    def n_classes(self) -> int:
        return sum(h.out_features for h in self.heads)

    def add_task(self, n_classes: int, generator: torch.Generator) -> nn.Linear:
        """Freeze the existing heads and append a fresh one of ``n_classes`` outputs."""
        if n_classes <= 0:
            raise ValueError(f"a task needs at least one class, got {n_classes}.")
        self.heads.requires_grad_(False)
        ref = next(self.parameters(), None)
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws globally
            head = nn.Linear(self.dim, n_classes)
        with torch.no_grad():
            nn.init.trunc_normal_(head.weight, std=0.02, a=-2.0, b=2.0, generator=generator)
            nn.init.zeros_(head.bias)
        self.heads.append(head.to(device=None if ref is None else ref.device))
        return head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) → logits (N, total classes), tasks in the order added."""
        if not len(self.heads):
            raise ValueError("the head has no task yet; call add_task first.")
        return torch.cat([head(features) for head in self.heads], dim=1)


def current_task_loss(logits: torch.Tensor, targets: torch.Tensor, known: int) -> torch.Tensor:
    """``CE(logits[:, known:], y − known)``; targets of earlier tasks (< known) are ignored.

    Reference l. 127–128 (``torch.where(y − known >= 0, y − known, −100)``).

    Parameters
    ----------
    logits : (B, C_total)
    targets : (B,) int64 class ids over all tasks so far
    known : int
        Classes of the earlier tasks.
    """
    if not 0 <= known < logits.shape[1]:
        raise ValueError(f"known must be in [0, {logits.shape[1]}), got {known}.")
    shifted = torch.where(targets >= known, targets - known, torch.full_like(targets, -100))
    return F.cross_entropy(logits[:, known:], shifted)
