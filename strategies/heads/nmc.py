"""``nmc``: nearest class mean on cached features, optionally with zero-shot.

Janson et al. 2022's rule is ``--set strategy.metric=euclidean`` (with the
default ``normalize=true``); SimpleCIL's (PILOT) is ``--set
strategy.normalize=false`` (with the default ``metric=cosine``); see
:mod:`strategies.estimators.nmc`. The strategy keeps running per-class sums in
a :class:`~strategies.estimators.nmc.NMC` estimator; see :mod:`strategies.heads.base` for the prediction rules and
the zero-shot ensemble.
"""

from __future__ import annotations

from typing import Literal

from strategies.estimators import NMC
from strategies.heads.base import TrainingFreeStrategy


class NMCStrategy(TrainingFreeStrategy):
    """Nearest class mean on frozen features; training-free and exactly incremental.

    Parameters
    ----------
    metric : {"cosine", "euclidean"}
        Distance to the class means.
    normalize : bool
        L2-normalise each feature before averaging and scoring.
    ensemble : bool
        On a backbone with a text tower, add CLIP's zero-shot logits:
        ``100·x·Tᵀ + α·(−distance)`` (off by default).
    alpha_grid : list of float or None
        Candidate ensemble weights (default 1e-4 … 100, as the GDA reference code).
    val_fraction : float
        Fraction of each class of a task's training features held out to choose α.
    """

    def __init__(
        self,
        *,
        metric: Literal["cosine", "euclidean"] = "cosine",
        normalize: bool = True,
        ensemble: bool = False,
        alpha_grid: list[float] | None = None,
        val_fraction: float = 0.2,
    ) -> None:
        self._setup(NMC(metric=metric, normalize=normalize), ensemble, alpha_grid, val_fraction)
