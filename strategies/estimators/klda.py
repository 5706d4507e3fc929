"""Random-feature LDA: Gaussian discriminant analysis on random Fourier features.

RanDumb (Prabhu et al., "RanDumb: A Simple Approach that Questions the
Efficacy of Continual Representation Learning", 2024; reference
github.com/drimpossible/RanDumb, ``src/main.py``) and KLDA (Momeni, Mazumder &
Liu, "Continual Learning Using a Kernel-Based Method Over Foundation Models",
AAAI 2025) map each feature with random Fourier features of the Gaussian
kernel (``RBFSampler(gamma="scale")`` in RanDumb) and classify with a linear
discriminant: class means and one shared covariance. Here the map is
:class:`~strategies.estimators.random_features.RandomFourierFeatures` and the
discriminant is :class:`strategies.GDA` (running class sums and pooled scatter
merged with Chan's formula), so ``partial_fit`` is exact: any chunking gives
the model of one fit on all data.

Deviations from RanDumb's offline code: (1) ``gamma="scale"`` is computed from
the first chunk (the first task), not from the whole training set, which an
incremental learner never sees at once; (2) the shared covariance is the pooled
within-class scatter with GDA's shrinkage (``"ks"`` by default, or any GDA
option), where RanDumb averages per-class OAS-shrunk covariances with
scikit-learn's ``LinearDiscriminantAnalysis(covariance_estimator=OAS())``
(not exactly incremental: it needs a D×D matrix per class).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import validate_data

from strategies.estimators.gda import GDA
from strategies.estimators.random_features import RandomFourierFeatures


class KLDA(GDA):
    """GDA on random Fourier features, exactly incremental.

    Parameters
    ----------
    n_components : int
        Random features M (RanDumb's scripts use 1,000 to 25,000). Memory is
        about four M×M float64 matrices (M = 2,000: 128 MB; 5,000: 0.8 GB), and
        each task costs two O(M³) factorisations.
    gamma : float or "scale"
        Gaussian kernel width; ``"scale"`` is ``1 / (D · Var(X))`` of the first chunk.
    random_state : int
    shrinkage, priors, solver
        As :class:`strategies.GDA` (on the M random features). ``priors`` defaults to
        ``"empirical"`` (class frequencies), RanDumb's: its ``LinearDiscriminantAnalysis``
        takes the class frequencies when given no priors.

    Attributes
    ----------
    features_ : RandomFourierFeatures
        The fitted map (drawn at the first ``partial_fit``).
    classes_, class_count_, means_, covariance_, precision_, coef_, intercept_
        As :class:`strategies.GDA`, in the M-dimensional feature space.
    n_features_in_ : int
        Input width D.
    """

    def __init__(self, *, n_components: int = 2_000, gamma: float | str = "scale",
                 random_state: int = 0, shrinkage: str | float | None = "ks",
                 priors: Any = "empirical", solver: str = "cholesky") -> None:
        super().__init__(shrinkage=shrinkage, priors=priors, solver=solver)
        self.n_components = n_components
        self.gamma = gamma
        self.random_state = random_state

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return self.features_.project(X).astype(np.float64, copy=False)

    def _reset(self) -> None:
        super()._reset()
        if hasattr(self, "features_"):
            del self.features_

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> KLDA:
        """Draw the feature map on the first chunk, then update GDA's statistics; returns self."""
        if not hasattr(self, "features_"):
            self._check_params()
            X = validate_data(self, X, dtype=np.float64)
            self.features_ = RandomFourierFeatures(self.n_components, gamma=self.gamma,
                                                   random_state=self.random_state,
                                                   dtype="float64").fit(X)
        return super().partial_fit(X, y, classes)

    def get_statistics(self) -> dict[str, Any]:
        stats = super().get_statistics()
        stats.update(random_weights=self.features_.random_weights_.copy(),
                     random_offset=self.features_.random_offset_.copy(),
                     gamma=float(self.features_.gamma_))
        return stats

    def set_statistics(self, stats: dict[str, Any]) -> KLDA:
        features = RandomFourierFeatures(self.n_components, gamma=self.gamma,
                                         random_state=self.random_state, dtype="float64")
        features.random_weights_ = np.asarray(stats["random_weights"], dtype=np.float64)
        features.random_offset_ = np.asarray(stats["random_offset"], dtype=np.float64)
        features.gamma_ = float(stats["gamma"])
        features.n_features_in_ = features.random_weights_.shape[0]
        super().set_statistics(stats)
        self.features_ = features
        self.n_features_in_ = features.n_features_in_
        return self
