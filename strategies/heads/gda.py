"""``gda``: Gaussian discriminant analysis on cached features, ensembled with zero-shot CLIP.

Wang et al., "A Hard-to-Beat Baseline for Training-free CLIP-based
Adaptation", ICLR 2024. The shared covariance is kept as running statistics
in a :class:`strategies.GDA` estimator, so each task costs O(n_task·D² + D³);
see :mod:`strategies.heads.base` for the prediction rules and how the
ensemble weight α is chosen (on held-out *training* features).
"""

from __future__ import annotations

from typing import Literal

from strategies.estimators import GDA
from strategies.heads.base import TrainingFreeStrategy


class GDAStrategy(TrainingFreeStrategy):
    """GDA linear head from class means and a shrunk shared covariance.

    Parameters
    ----------
    shrinkage : "ks", "auto", float in [0, 1] or None
        Covariance estimator (see :class:`strategies.GDA`); ``"ks"`` is the paper's.
    priors : {"uniform", "empirical"}
        Class priors of the intercept (the paper uses uniform).
    solver : {"cholesky", "pinv"}
        How the covariance is inverted.
    ensemble : bool
        On a backbone with a text tower, logits are
        ``100·x·Tᵀ + α·(x·coef_ᵀ + intercept_)``; off automatically on
        backbones without text (``pixels``).
    alpha_grid : list of float or None
        Candidate ensemble weights (default 1e-4 … 100, the reference code's grid).
    val_fraction : float
        Fraction of each class of a task's training features held out to choose α.
    """

    def __init__(
        self,
        *,
        shrinkage: str | float | None = "ks",
        priors: Literal["uniform", "empirical"] = "uniform",
        solver: Literal["cholesky", "pinv"] = "cholesky",
        ensemble: bool = True,
        alpha_grid: list[float] | None = None,
        val_fraction: float = 0.2,
    ) -> None:
        self._setup(GDA(shrinkage=shrinkage, priors=priors, solver=solver), ensemble,
                    alpha_grid, val_fraction)
