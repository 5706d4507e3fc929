"""RanPAC: a frozen random ReLU projection feeding an exact incremental ridge head.

McDonnell et al., "RanPAC: Random Projections and Pre-trained Models for
Continual Learning", NeurIPS 2023 (Sec. 4; reference
github.com/McDonnell-Research-Lab/RanPAC, ``RanPAC.py``):

    h(x) = max(0, x·W),   W ~ N(0, 1)^(D×M), fixed after the first task
    G += Σ h hᵀ,  Q += Σ h yᵀ  (one-hot y)
    λ  = argmin over 10^-8 … 10^8 of the MSE on a 20 % split of the task
    head = (G + λI)⁻¹ Q

This is the paper's "RanPAC without PETL" (its Phase 2 only): the
first-session parameter-efficient adaptation (Phase 1) trains the backbone
and does not apply to a frozen VLM's cached features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import validate_data

from strategies.estimators.incremental_classifier import IncrementalClassifier
from strategies.estimators.random_features import RandomReLUFeatures
from strategies.estimators.ridge import IncrementalRidge


class RanPAC(IncrementalClassifier):
    """Random-projection ridge classifier, exactly incremental.

    Parameters
    ----------
    n_components : int or None
        Projection width M (paper: 10,000). ``None``: no projection, ridge on
        the features themselves (the paper's "decorrelation only" ablation).
    alpha : float or "auto"
        Ridge λ (``"auto"``: chosen per task as the reference, see
        :class:`~strategies.estimators.ridge.IncrementalRidge`).
    alpha_grid : sequence of float or None
    val_fraction : float
    dtype : {"float64", "float32"}
        Storage of ``G`` (M = 10,000: 800 MB in float64, 400 MB in float32).
    random_state : int
        Seeds ``W`` and the per-task shuffle of the λ split.

    Attributes
    ----------
    projection_ : RandomReLUFeatures or None
    ridge_ : IncrementalRidge
    classes_ : ndarray, shape (C,)
    n_features_in_ : int
    """

    def __init__(self, *, n_components: int | None = 10_000, alpha: float | str = "auto",
                 alpha_grid: Any = None, val_fraction: float = 0.2, dtype: str = "float64",
                 random_state: int = 0) -> None:
        self.n_components = n_components
        self.alpha = alpha
        self.alpha_grid = alpha_grid
        self.val_fraction = val_fraction
        self.dtype = dtype
        self.random_state = random_state

    def _make_ridge(self) -> IncrementalRidge:
        return IncrementalRidge(alpha=self.alpha, alpha_grid=self.alpha_grid,
                                val_fraction=self.val_fraction, solver="cholesky",
                                dtype=self.dtype, random_state=self.random_state)

    def _check_params(self) -> None:
        self._make_ridge()._check_params()
        if self.n_components is not None:
            RandomReLUFeatures(self.n_components, random_state=self.random_state).fit(np.zeros((1, 1)))

    def _reset(self) -> None:
        for name in ("projection_", "ridge_", "classes_", "n_features_in_"):
            if hasattr(self, name):
                delattr(self, name)

    def _project(self, X: np.ndarray) -> np.ndarray:
        return X if self.projection_ is None else self.projection_.project(X)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> RanPAC:
        """Project the chunk ``X`` (n, D) and add it to the ridge statistics; returns self."""
        self._check_params()
        first = not hasattr(self, "ridge_")
        X = validate_data(self, X, reset=first, dtype=np.float64)
        if first:
            self.projection_ = None if self.n_components is None else RandomReLUFeatures(
                self.n_components, distribution="normal", random_state=self.random_state,
                dtype="float32" if self.dtype == "float32" else "float64").fit(X)
            self.ridge_ = self._make_ridge()
        self.ridge_.partial_fit(self._project(X), y, classes)
        self.classes_ = self.ridge_.classes_
        return self

    @property
    def alpha_(self) -> float:
        """λ chosen on the last task."""
        return self.ridge_.alpha_

    def _decision_function(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Ridge outputs ``h(x)·(G + λI)⁻¹Q`` (n, C) or only ``columns``."""
        return self.ridge_._decision_function(self._project(X), columns)

    def get_statistics(self) -> dict[str, Any]:
        stats = {f"ridge.{k}": v for k, v in self.ridge_.get_statistics().items()}
        stats["n_features_in"] = int(self.n_features_in_)
        if self.projection_ is not None:
            stats["components"] = self.projection_.components_.copy()
        return stats

    def set_statistics(self, stats: dict[str, Any]) -> RanPAC:
        self._check_params()
        self._reset()
        self.n_features_in_ = int(stats["n_features_in"])
        self.projection_ = None
        if "components" in stats:
            self.projection_ = RandomReLUFeatures(self.n_components, random_state=self.random_state)
            self.projection_.components_ = np.asarray(stats["components"])
            self.projection_.n_features_in_ = self.n_features_in_
        self.ridge_ = self._make_ridge().set_statistics(
            {k[6:]: v for k, v in stats.items() if k.startswith("ridge.")})
        self.classes_ = self.ridge_.classes_
        return self
