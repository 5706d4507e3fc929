"""RanPAC: a frozen random ReLU projection feeding an exact incremental ridge head.

McDonnell et al., "RanPAC: Random Projections and Pre-trained Models for
Continual Learning", NeurIPS 2023 (Sec. 4; reference
github.com/McDonnell-Research-Lab/RanPAC, ``RanPAC.py``):

    h(x) = max(0, x·W),   W ~ N(0, 1)^(D×M), fixed after the first task
    G += Σ h hᵀ,  Q += Σ h yᵀ  (one-hot y)
    λ  = argmin over 10^-8 … 10^8 of the MSE on a 20 % split of the task
    head = (G + λI)⁻¹ Q = Hᵀ(HHᵀ + λI)⁻¹Y   (solved in the cheaper form, see
                                            strategies.estimators.feature_ridge)

This is the paper's "RanPAC without PETL" (its Phase 2 only): the
first-session parameter-efficient adaptation (Phase 1) trains the backbone
and does not apply to a frozen VLM's cached features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import validate_data

from strategies.estimators.feature_ridge import RandomFeatureRidge
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
        :class:`~strategies.estimators.feature_ridge.RandomFeatureRidge`).
    alpha_grid : sequence of float or None
    val_fraction : float
    solver : {"auto", "dual", "primal"}
        ``"auto"``: the dual (kernel) form while the samples seen are at most M, then
        the primal ``G + λI`` (see :mod:`strategies.estimators.feature_ridge`). Without a
        projection the ridge is always primal (M = D is small).
    device : str or None
        Torch device of the heavy products and solves (``None``: NumPy on the CPU), see
        :class:`~strategies.estimators.feature_ridge.RandomFeatureRidge`.
    dtype : {"float64", "float32"}
        Arithmetic and storage of the projection and of ``G`` (M = 10,000: 800 MB in
        float64, 400 MB in float32) or ``K``.
    random_state : int
        Seeds ``W`` and the per-task shuffle of the λ split.

    Attributes
    ----------
    ridge_ : RandomFeatureRidge or IncrementalRidge
    classes_ : ndarray, shape (C,)
    n_features_in_ : int
    """

    def __init__(self, *, n_components: int | None = 10_000, alpha: float | str = "auto",
                 alpha_grid: Any = None, val_fraction: float = 0.2, solver: str = "auto",
                 dtype: str = "float64", device: str | None = None, random_state: int = 0) -> None:
        self.n_components = n_components
        self.alpha = alpha
        self.alpha_grid = alpha_grid
        self.val_fraction = val_fraction
        self.solver = solver
        self.dtype = dtype
        self.device = device
        self.random_state = random_state

    def _make_ridge(self) -> RandomFeatureRidge | IncrementalRidge:
        if self.n_components is None:
            return IncrementalRidge(alpha=self.alpha, alpha_grid=self.alpha_grid,
                                    val_fraction=self.val_fraction, solver="cholesky",
                                    dtype=self.dtype, random_state=self.random_state)
        return RandomFeatureRidge(n_components=self.n_components, distribution="normal",
                                  alpha=self.alpha, alpha_grid=self.alpha_grid,
                                  val_fraction=self.val_fraction, solver=self.solver,
                                  dtype=self.dtype, device=self.device,
                                  random_state=self.random_state)

    def _check_params(self) -> None:
        self._make_ridge()._check_params()
        if self.solver not in ("auto", "dual", "primal"):
            raise ValueError(f"RanPAC solver must be 'auto', 'dual' or 'primal', got {self.solver!r}.")

    def _reset(self) -> None:
        for name in ("ridge_", "classes_", "n_features_in_"):
            if hasattr(self, name):
                delattr(self, name)

    @property
    def projection_(self) -> RandomReLUFeatures | None:
        """The random ReLU feature map (``None`` without projection)."""
        return getattr(self.ridge_, "projection_", None)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> RanPAC:
        """Add the chunk ``X`` (n, D), ``y`` (n,) to the ridge statistics; returns self."""
        self._check_params()
        first = not hasattr(self, "ridge_")
        X = validate_data(self, X, reset=first, dtype=np.float64)
        if first:
            self.ridge_ = self._make_ridge()
        if hasattr(self.ridge_, "device"):
            self.ridge_.device = self.device
        self.ridge_.partial_fit(X, y, classes)
        self.classes_ = self.ridge_.classes_
        return self

    @property
    def alpha_(self) -> float:
        """λ chosen on the last task."""
        return self.ridge_.alpha_

    @property
    def condition_number_(self) -> float | None:
        """Condition number of the system solved for the last task (projection only)."""
        return getattr(self.ridge_, "condition_number_", None)

    def _decision_function(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Ridge outputs ``h(x)·(G + λI)⁻¹Q`` (n, C) or only ``columns``."""
        return self.ridge_._decision_function(X, columns)

    def statistics_nbytes(self) -> int:
        """Bytes of the fitted state (without copying it where the ridge can say so)."""
        if hasattr(self.ridge_, "statistics_nbytes"):
            return self.ridge_.statistics_nbytes()
        return sum(v.nbytes for v in self.get_statistics().values() if isinstance(v, np.ndarray))

    def get_statistics(self) -> dict[str, Any]:
        stats = {f"ridge.{k}": v for k, v in self.ridge_.get_statistics().items()}
        stats["n_features_in"] = int(self.n_features_in_)
        return stats

    def set_statistics(self, stats: dict[str, Any]) -> RanPAC:
        self._check_params()
        self._reset()
        self.n_features_in_ = int(stats["n_features_in"])
        self.ridge_ = self._make_ridge().set_statistics(
            {k[6:]: v for k, v in stats.items() if k.startswith("ridge.")})
        self.classes_ = self.ridge_.classes_
        return self
