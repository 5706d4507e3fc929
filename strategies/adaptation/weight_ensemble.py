"""Weight-space ensembles: WiSE-FT interpolation and ZSCL's running weight average.

* :func:`interpolate` — WiSE-FT (Wortsman et al., CVPR 2022, Eq. 1):
  ``θ_α = (1 − α)·θ₀ + α·θ₁``, θ₀ the anchor (zero-shot or previous-task weights),
  θ₁ the fine-tuned weights. In ZSCL's MTIL baseline (``scripts/WiSE_finetune.sh``:
  ``--wise_merge --wise_ft_model n --wise_ft_alpha 0.8``) it is applied once after
  every task with θ₀ = the weights the task started from.
* :class:`RunningWeightAverage` — ZSCL's weight ensemble during training (Zheng et al.,
  ICCV 2023, "weight ensemble"; ``--we --avg_freq 100``): every ``every`` steps the running mean
  of the task-start weights and the snapshots so far absorbs the current weights;
  after the task the model takes the average.

Both act on ``{name: tensor}`` mappings of floating-point weights (a model's
``named_parameters`` or ``state_dict``), returning new tensors.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def _check_pair(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> None:
    if a.keys() != b.keys():
        missing = sorted(set(a) ^ set(b))[:3]
        raise ValueError(f"the two weight sets have different names (e.g. {missing}).")
    for name, value in a.items():
        if value.shape != b[name].shape:
            raise ValueError(
                f"{name} has shape {tuple(value.shape)} in one set, {tuple(b[name].shape)} "
                "in the other."
            )
        if not (value.is_floating_point() and b[name].is_floating_point()):
            raise TypeError(f"{name} is not floating point; pass weights only.")


def interpolate(
    anchor: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """WiSE-FT weights ``α·θ₁ + (1 − α)·θ₀`` for every name.

    Computed in the reference's order of operations (ZSCL ``finetune.py``
    l. 339–340: ``θ₁·α + θ₀·(1 − α)``), so results match it to the last bit.

    Parameters
    ----------
    anchor : {name: tensor} θ₀
    finetuned : {name: tensor} θ₁, same names and shapes
    alpha : float in [0, 1]
        Weight of the fine-tuned model (α = 1 keeps θ₁, α = 0 returns θ₀).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    _check_pair(anchor, finetuned)
    return {name: finetuned[name] * alpha + anchor[name] * (1 - alpha) for name in anchor}


class RunningWeightAverage:
    """ZSCL's in-training weight ensemble: a uniform mean of weight snapshots.

    Starting from the weights at the beginning of the task, θ̄ = θ_start and n = 0;
    each snapshot of the current weights θ does ``n ← n + 1``,
    ``θ̄ ← (θ̄·n + θ) / (1 + n)`` (ZSCL ``helpers.py`` l. 31–34, called with the
    incremented count, ``finetune.py`` l. 310–320). After k snapshots
    θ̄ = (θ_start + θ⁽¹⁾ + … + θ⁽ᵏ⁾) / (k + 1).

    When snapshots are taken: the reference loops over steps ``0..T`` (its last step
    runs at learning rate 0, see :func:`~strategies.adaptation.schedule.warmup_cosine_factor`)
    and snapshots after every step ``s`` with ``s % every == 0``. With ``T`` real steps
    ``0..T−1`` here, :meth:`snapshots_after` reproduces that: the reference's snapshot at
    ``s = T`` is taken after our last step, whose weights it equals.

    Parameters
    ----------
    start : {name: tensor}
        Weights at the start of the task (copied).
    every : int > 0
        Snapshot period in steps (``--avg_freq``; 100 in the reference runs).
    total : int > 0
        Optimiser steps of the task, T.

    Attributes
    ----------
    average : dict of tensors
        The current θ̄.
    count : int
        Snapshots taken so far (n).
    """

    def __init__(self, start: Mapping[str, torch.Tensor], *, every: int, total: int) -> None:
        if every <= 0 or total <= 0:
            raise ValueError(f"every and total must be positive, got every={every}, total={total}.")
        for name, value in start.items():
            if not value.is_floating_point():
                raise TypeError(f"{name} is not floating point; pass weights only.")
        self.every, self.total = every, total
        self.average = {name: value.detach().clone() for name, value in start.items()}
        self.count = 0

    def snapshots_after(self, step: int) -> int:
        """How many snapshots the reference takes after 0-based step ``step`` (0, 1 or 2)."""
        if not 0 <= step < self.total:
            raise ValueError(f"step must be in [0, {self.total}), got {step}.")
        due = int(step % self.every == 0)
        if step == self.total - 1 and self.total % self.every == 0:
            due += 1  # the reference's snapshot after its extra, zero-rate step T
        return due

    def update(self, current: Mapping[str, torch.Tensor]) -> None:
        """Absorb one snapshot ``current`` (same names and shapes as ``start``)."""
        _check_pair(self.average, current)
        self.count += 1
        with torch.no_grad():
            for name, value in current.items():
                self.average[name] = (self.average[name] * self.count + value) / (1.0 + self.count)

    def after_step(self, step: int, current: Mapping[str, torch.Tensor]) -> int:
        """Take the snapshots due after ``step``; return how many were taken."""
        due = self.snapshots_after(step)
        for _ in range(due):
            self.update(current)
        return due
