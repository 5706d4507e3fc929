"""RAIL: regression-based analytic incremental learning, and its fusion with zero-shot CLIP.

Xu et al., "Advancing Cross-domain Discriminability in Continual Learning of
Vision-Language Models", NeurIPS 2024 (Sec. 4; reference
github.com/linghan1997/Regression-based-Analytic-Incremental-Learning).

Primal form (``primal_RAIL.py``)
    ``h(x) = ReLU(x·W)`` with ``W ~ U(−1/√D, 1/√D)`` (D×M, M = 15,000) and ridge
    regression onto one-hot labels of every class seen so far, ``λ = 0.1``.
    The reference solves it recursively (``R = (ΣhhᵀW + λI)⁻¹`` after the first
    task, then Woodbury updates: ``solver="recursive"``,
    :class:`~strategies.estimators.ridge.IncrementalRidge`); by default the same
    head is solved in its dual form while the samples seen are at most M, then
    as ``G + λI`` (``solver="auto"``,
    :class:`~strategies.estimators.feature_ridge.RandomFeatureRidge`): no M×M
    matrix until more than M samples are seen. Exact: equal to one ridge fit
    on all data.
Dual form (``dual_RAIL.py``)
    kernel ridge regression with the Gaussian kernel ``exp(−γ‖x − x'‖²)``,
    ``γ = 0.1``, ``λ = 0.001``, refitted on all stored training features after
    every task (``α = (K + λI)⁻¹Y``); it keeps every training feature.
Fusion (:func:`rail_fusion`, the evaluation loop of both scripts)
    ``p = softmax(100·x·Tᵀ)`` over the whole label space; where ``argmax p`` is
    a class already learned, ``(1 − w)·p + w·f(x)`` with the regression output
    ``f`` (zero for classes not learned), else ``p``: images of domains not
    learned yet keep CLIP's zero-shot prediction over every class. ``w = 0.8``.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
import torch
from scipy import linalg
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from strategies.estimators.feature_ridge import RandomFeatureRidge
from strategies.estimators.incremental_classifier import IncrementalClassifier
from strategies.estimators.random_features import RandomReLUFeatures
from strategies.estimators.ridge import IncrementalRidge, one_hot

RAIL_ALPHAS = {"primal": 0.1, "dual": 0.001}


def rail_fusion(zero_shot_logits: torch.Tensor, regression: torch.Tensor, learned: torch.Tensor,
                weight: float = 0.8) -> torch.Tensor:
    """RAIL's training-free fusion of zero-shot CLIP and the regression head.

    Parameters
    ----------
    zero_shot_logits : Tensor, shape (n, C)
        ``100·x·Tᵀ`` over the label space.
    regression : Tensor, shape (n, C)
        Regression outputs; columns of classes not learned are ignored (taken as 0).
    learned : Tensor of bool, shape (C,)
        Which classes of the label space the regression head has learned.
    weight : float
        ``w`` (reference: 0.8).

    Returns
    -------
    Tensor, shape (n, C)
        ``softmax(zero_shot_logits)``, and ``(1 − w)·that + w·regression`` on the
        rows whose zero-shot prediction is a learned class.
    """
    probs = torch.softmax(zero_shot_logits.float(), dim=-1)
    adapted = torch.where(learned[None, :], regression.float(), torch.zeros_like(probs))
    mask = learned[probs.argmax(dim=-1)]
    return torch.where(mask[:, None], (1.0 - weight) * probs + weight * adapted, probs)


def gaussian_kernel(A: np.ndarray, B: np.ndarray, gamma: float) -> np.ndarray:
    """``exp(−γ‖a − b‖²)`` for every row pair, shape (len(A), len(B))."""
    sq = (A**2).sum(1)[:, None] - 2.0 * A @ B.T + (B**2).sum(1)[None, :]
    return np.exp(-gamma * np.maximum(sq, 0.0))


class RAIL(IncrementalClassifier):
    """RAIL's regression head, primal (random features, recursive ridge) or dual (kernel ridge).

    Parameters
    ----------
    form : {"primal", "dual"}
    n_components : int
        Primal random ReLU features M (reference: 15,000; ``R`` is M×M).
    alpha : float or None
        Ridge λ; ``None`` is the reference's (primal 0.1, dual 0.001).
    gamma : float
        Dual Gaussian kernel width (reference: 0.1).
    dtype : {"float64", "float32"}
        Primal storage of ``G`` or ``R`` (M = 15,000: 1.8 GB in float64, 0.9 GB in float32).
    solver : {"auto", "dual", "primal", "recursive"}
        Primal form's solver: ``"recursive"`` is the reference's Woodbury recursion on
        ``R``; the others as :class:`~strategies.estimators.feature_ridge.RandomFeatureRidge`.
    device : str or None
        Torch device of the primal form's products and solves (``None``: NumPy).
    random_state : int

    Attributes
    ----------
    classes_ : ndarray, shape (C,)
    alpha_ : float
    projection_, ridge_ : primal form's feature map and head
    X_fit_ : ndarray, shape (N, D)
        Dual form: every training feature seen.
    y_fit_ : ndarray, shape (N,)
    dual_coef_ : ndarray, shape (N, C)
    n_features_in_ : int
    """

    def __init__(self, *, form: str = "primal", n_components: int = 15_000,
                 alpha: float | None = None, gamma: float = 0.1, dtype: str = "float64",
                 solver: str = "auto", device: str | None = None, random_state: int = 0) -> None:
        self.form = form
        self.n_components = n_components
        self.alpha = alpha
        self.gamma = gamma
        self.dtype = dtype
        self.solver = solver
        self.device = device
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.form not in RAIL_ALPHAS:
            raise ValueError(f"RAIL form must be 'primal' or 'dual', got {self.form!r}.")
        for name in ("alpha", "gamma"):
            v = getattr(self, name)
            if (v is not None or name == "gamma") and (
                    isinstance(v, bool) or not isinstance(v, Real) or not v > 0):
                raise ValueError(f"RAIL {name} must be a number > 0, got {v!r}.")
        if self.solver not in ("auto", "dual", "primal", "recursive"):
            raise ValueError("RAIL solver must be 'auto', 'dual', 'primal' or 'recursive', "
                             f"got {self.solver!r}.")
        if self.form == "primal":
            self._make_ridge()._check_params()

    def _alpha(self) -> float:
        return float(RAIL_ALPHAS[self.form] if self.alpha is None else self.alpha)

    def _make_ridge(self) -> IncrementalRidge | RandomFeatureRidge:
        if self.solver == "recursive":
            return IncrementalRidge(alpha=self._alpha(), solver="recursive", dtype=self.dtype)
        return RandomFeatureRidge(n_components=self.n_components, distribution="uniform",
                                  alpha=self._alpha(), solver=self.solver, dtype=self.dtype,
                                  device=self.device, random_state=self.random_state)

    @property
    def condition_number_(self) -> float | None:
        """Condition number of the primal system solved for the last chunk (not recursive)."""
        return getattr(getattr(self, "ridge_", None), "condition_number_", None)

    def _reset(self) -> None:
        for name in ("classes_", "alpha_", "projection_", "ridge_", "X_fit_", "y_fit_",
                     "dual_coef_", "n_features_in_"):
            if hasattr(self, name):
                delattr(self, name)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> RAIL:
        """Learn one more chunk ``X`` (n, D), ``y`` (n,); returns self."""
        self._check_params()
        first = not hasattr(self, "classes_")
        X, y = validate_data(self, X, y, reset=first, dtype=np.float64)
        check_classification_targets(y)
        self.alpha_ = self._alpha()
        if self.form == "primal":
            if first:
                self.ridge_ = self._make_ridge()
                if self.solver == "recursive":
                    self.projection_ = RandomReLUFeatures(
                        self.n_components, distribution="uniform",
                        random_state=self.random_state, dtype=self.dtype).fit(X)
            if self.solver == "recursive":
                self.ridge_.partial_fit(self.projection_.project(X), y, classes)
            else:
                self.ridge_.device = self.device
                self.ridge_.partial_fit(X, y, classes)
                self.projection_ = self.ridge_.projection_
            self.classes_ = self.ridge_.classes_
            return self
        self.X_fit_ = X if first else np.vstack([self.X_fit_, X])
        self.y_fit_ = y if first else np.concatenate([self.y_fit_, y])
        self.classes_ = np.unique(self.y_fit_)
        K = gaussian_kernel(self.X_fit_, self.X_fit_, self.gamma)
        K[np.diag_indices_from(K)] += self.alpha_
        self.dual_coef_ = linalg.solve(K, one_hot(self.y_fit_, self.classes_), assume_a="pos")
        return self

    def statistics_nbytes(self) -> int:
        """Bytes of the fitted state, without copying it."""
        ridge = getattr(self, "ridge_", None)
        if hasattr(ridge, "statistics_nbytes"):
            return ridge.statistics_nbytes()
        return sum(v.nbytes for v in self.get_statistics().values() if isinstance(v, np.ndarray))

    def _decision_function(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Regression outputs (n, C) (or only ``columns``)."""
        if self.form == "primal":
            if self.solver != "recursive":
                return self.ridge_._decision_function(X, columns)
            return self.ridge_._decision_function(self.projection_.project(X), columns)
        coef = self.dual_coef_ if columns is None else self.dual_coef_[:, columns]
        return gaussian_kernel(X, self.X_fit_, self.gamma) @ coef

    def get_statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"n_features_in": int(self.n_features_in_)}
        if self.form == "primal":
            if self.solver == "recursive":
                stats["components"] = self.projection_.components_.copy()
            stats.update({f"ridge.{k}": v for k, v in self.ridge_.get_statistics().items()})
        else:
            stats.update(X_fit=self.X_fit_.copy(), y_fit=self.y_fit_.copy(),
                         dual_coef=self.dual_coef_.copy())
        return stats

    def set_statistics(self, stats: dict[str, Any]) -> RAIL:
        self._check_params()
        self._reset()
        self.n_features_in_, self.alpha_ = int(stats["n_features_in"]), self._alpha()
        if self.form == "primal":
            self.ridge_ = self._make_ridge().set_statistics(
                {k[6:]: v for k, v in stats.items() if k.startswith("ridge.")})
            if self.solver == "recursive":
                self.projection_ = RandomReLUFeatures(
                    self.n_components, distribution="uniform", random_state=self.random_state,
                    dtype=self.dtype)
                self.projection_.components_ = np.asarray(stats["components"])
                self.projection_.n_features_in_ = self.n_features_in_
            else:
                self.projection_ = self.ridge_.projection_
            self.classes_ = self.ridge_.classes_
        else:
            self.X_fit_ = np.asarray(stats["X_fit"], dtype=np.float64)
            self.y_fit_ = np.asarray(stats["y_fit"])
            self.dual_coef_ = np.asarray(stats["dual_coef"], dtype=np.float64)
            self.classes_ = np.unique(self.y_fit_)
        return self
