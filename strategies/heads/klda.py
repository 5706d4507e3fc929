"""``klda``: random Fourier features + shared-covariance GDA (RanDumb 2024; KLDA, AAAI 2025).

See :class:`strategies.estimators.klda.KLDA`; runner glue and the optional
zero-shot ensemble are :class:`strategies.heads.base.TrainingFreeStrategy`'s.
"""

from __future__ import annotations

from typing import Literal

from strategies.estimators.klda import KLDA
from strategies.heads.base import TrainingFreeStrategy


class KLDAStrategy(TrainingFreeStrategy):
    """Linear discriminant on random Fourier features of the Gaussian kernel, exactly incremental.

    Parameters
    ----------
    n_components : int
        Random features M (memory ~4·M² float64; each task two O(M³) factorisations).
    gamma : float or "scale"
        Kernel width; ``"scale"`` = 1 / (D · Var) of the first task's features.
    shrinkage, priors
        As ``gda`` (on the random features). ``priors="empirical"`` (class frequencies of the
        data seen so far) by default, as RanDumb's ``LinearDiscriminantAnalysis``; ``gda``
        keeps uniform priors, its paper's.
    random_state : int
    ensemble, alpha_grid, val_fraction
        Zero-shot ensemble as in ``gda`` (off by default: the papers have none).
    """

    reports_conditioning = True

    def __init__(
        self,
        *,
        n_components: int = 2_000,
        gamma: float | Literal["scale"] = "scale",
        shrinkage: str | float | None = "ks",
        priors: Literal["uniform", "empirical"] = "empirical",
        random_state: int = 0,
        ensemble: bool = False,
        alpha_grid: list[float] | None = None,
        val_fraction: float = 0.2,
    ) -> None:
        model = KLDA(n_components=n_components, gamma=gamma, random_state=random_state,
                     shrinkage=shrinkage, priors=priors)
        self._setup(model, ensemble, alpha_grid, val_fraction)
