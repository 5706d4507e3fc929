"""Exact incremental ridge regression onto one-hot labels, as a classifier.

With features ``H`` (n, M) and one-hot targets ``Y`` (n, C) of all data seen
so far, the head is the ridge solution (Hoerl & Kennard 1970)::

    W = (G + λI)⁻¹ Q,   G = Σ HᵀH  (M, M),   Q = Σ HᵀY  (M, C)
    score(h) = h·W      (C columns, one per class)

``G`` and ``Q`` are sums over samples, so a new chunk only adds its own
``HᵀH`` and ``HᵀY``: any chunking gives the same head as one fit. Two solvers:

``"cholesky"``
    keeps ``G`` and ``Q`` and solves ``G + λI`` after every chunk (RanPAC,
    McDonnell et al., NeurIPS 2023, Sec. 4.2; reference ``RanPAC.py``,
    ``replace_fc``). λ may change between chunks.
``"recursive"``
    keeps ``R = (G + λI)⁻¹`` and ``W``; the first chunk inverts, later ones
    apply the Woodbury identity block by block (recursive least squares:
    ``R ← R − R Hᵀ(I + H R Hᵀ)⁻¹ H R``, ``W ← W + R Hᵀ(Y − H W)``), the
    primal RAIL of Xu et al. (NeurIPS 2024, reference ``primal_RAIL.py``,
    ``analytic_adaption``). λ is fixed; costs O(M²·n) per chunk, no O(M³) solve.

``alpha="auto"`` chooses λ for every chunk as RanPAC's
``optimise_ridge_parameter``: from ``alpha_grid`` (default ``10^-8 … 10^8``),
fit on the first 80 % of the chunk (after a seeded shuffle, as the
reference's shuffled loader), pick the λ with the least mean squared error of
the one-hot targets on the last 20 %. The reference solves the 17 systems
one by one; here one SVD (or eigendecomposition) of the 80 % part gives every
λ's solution, the same numbers up to rounding.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from scipy import linalg
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from strategies.estimators.incremental_classifier import IncrementalClassifier, grow_columns

RANPAC_ALPHAS: tuple[float, ...] = tuple(10.0 ** np.arange(-8, 9))
_BLOCK = 512  # rows per Woodbury update of the recursive solver


def one_hot(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """One-hot rows (n, C) of labels ``y`` among sorted ``classes``."""
    Y = np.zeros((y.size, classes.size))
    Y[np.arange(y.size), np.searchsorted(classes, y)] = 1.0
    return Y


def ridge_path_mse(H_fit: np.ndarray, Y_fit: np.ndarray, H_val: np.ndarray, Y_val: np.ndarray,
                   alphas: np.ndarray) -> np.ndarray:
    """Validation MSE of ``(H_fitᵀH_fit + λI)⁻¹ H_fitᵀ Y_fit`` for every λ in ``alphas``.

    Uses the thin SVD of ``H_fit`` when it has fewer rows than columns (the
    solution lies in its row space), else the eigendecomposition of its Gram.
    Returns shape (len(alphas),).
    """
    if H_fit.shape[0] < H_fit.shape[1]:
        U, s, Vt = linalg.svd(H_fit, full_matrices=False)
        P, B, num, den = H_val @ Vt.T, U.T @ Y_fit, s, s**2
    else:
        den, V = linalg.eigh(H_fit.T @ H_fit)
        P, B, num = H_val @ V, V.T @ (H_fit.T @ Y_fit), np.ones_like(den)
    out = np.empty(len(alphas))
    for i, lam in enumerate(alphas):
        pred = P @ ((num / (den + lam))[:, None] * B)
        out[i] = np.mean((pred - Y_val) ** 2)
    return out


class IncrementalRidge(IncrementalClassifier):
    """Ridge regression on one-hot labels with exact incremental sufficient statistics.

    Parameters
    ----------
    alpha : float > 0 or "auto"
        Ridge λ; ``"auto"`` re-chooses it on every chunk as RanPAC does.
    alpha_grid : sequence of float or None
        Candidates for ``"auto"`` (default ``10^-8 … 10^8``, RanPAC's).
    val_fraction : float in (0, 1)
        Held-out tail of each chunk for ``"auto"`` (RanPAC: 0.2).
    shuffle : bool
        Shuffle each chunk (seeded by ``random_state`` and the chunk count)
        before the split; off when the rows are already in random order.
    solver : {"cholesky", "recursive"}
        See the module docstring; ``"recursive"`` needs a fixed ``alpha``.
    dtype : {"float64", "float32"}
        Storage and arithmetic of ``G`` (or ``R``). float64 by default: with
        λ as small as 1e-8 the solve needs the small eigenvalues of ``G``,
        which float32 sums over 10⁵ samples lose; float32 halves the memory
        (M = 10,000: 400 MB instead of 800 MB).
    random_state : int

    Attributes
    ----------
    classes_ : ndarray, shape (C,)
    coef_ : ndarray, shape (C, M)
    alpha_ : float
        λ of the last chunk.
    gram_ : ndarray, shape (M, M)
        ``G`` (solver ``"cholesky"``).
    moment_ : ndarray, shape (M, C)
        ``Q`` (solver ``"cholesky"``).
    inverse_ : ndarray, shape (M, M)
        ``(G + λI)⁻¹`` (solver ``"recursive"``).
    n_chunks_ : int
    n_features_in_ : int
    """

    def __init__(self, *, alpha: float | str = "auto", alpha_grid: Any = None,
                 val_fraction: float = 0.2, shuffle: bool = True, solver: str = "cholesky",
                 dtype: str = "float64", random_state: int = 0) -> None:
        self.alpha = alpha
        self.alpha_grid = alpha_grid
        self.val_fraction = val_fraction
        self.shuffle = shuffle
        self.solver = solver
        self.dtype = dtype
        self.random_state = random_state

    def _check_params(self) -> None:
        a = self.alpha
        if a != "auto" and (isinstance(a, bool) or not isinstance(a, Real) or not a > 0):
            raise ValueError(f"IncrementalRidge alpha must be 'auto' or a number > 0, got {a!r}.")
        grid = self._grid()
        if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
            raise ValueError(f"IncrementalRidge alpha_grid must be non-empty, finite and > 0, "
                             f"got {self.alpha_grid!r}.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"IncrementalRidge val_fraction must lie in (0, 1), got {self.val_fraction!r}.")
        if self.solver not in ("cholesky", "recursive"):
            raise ValueError(f"IncrementalRidge solver must be 'cholesky' or 'recursive', got {self.solver!r}.")
        if self.solver == "recursive" and a == "auto":
            raise ValueError("IncrementalRidge solver='recursive' keeps (G + λI)⁻¹ for one λ; give a "
                             "fixed alpha (e.g. 0.1, RAIL's) or use solver='cholesky'.")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"IncrementalRidge dtype must be 'float32' or 'float64', got {self.dtype!r}.")

    def _grid(self) -> np.ndarray:
        return np.asarray(RANPAC_ALPHAS if self.alpha_grid is None else self.alpha_grid, dtype=float).ravel()

    def _reset(self) -> None:
        for name in ("classes_", "coef_", "alpha_", "gram_", "moment_", "inverse_", "n_chunks_",
                     "n_features_in_", "_declared"):
            if hasattr(self, name):
                delattr(self, name)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> IncrementalRidge:
        """Add one chunk ``X`` (n, M), ``y`` (n,) to the statistics and re-solve; returns self."""
        self._check_params()
        first = not hasattr(self, "classes_")
        X, y = validate_data(self, X, y, reset=first, dtype=np.float64)
        check_classification_targets(y)
        if classes is not None:
            self._declared = np.unique(np.asarray(classes))
        declared = getattr(self, "_declared", None)
        if declared is not None and np.setdiff1d(y, declared).size:
            raise ValueError(f"labels {np.setdiff1d(y, declared)[:5].tolist()} are not in classes="
                             f"{declared.tolist()[:10]}; pass the full set of classes, or "
                             "classes=None to accept new ones.")
        H = X.astype(self.dtype, copy=False)
        if first:
            self.classes_, self.n_chunks_ = np.unique(y)[:0], 0
        if self.alpha == "auto":
            self.alpha_ = self._select_alpha(H, y)
        else:
            self.alpha_ = float(self.alpha)
        if self.solver == "cholesky":
            self._update_gram(H, y, first)
        else:
            self._update_recursive(H, y, first)
        self.n_chunks_ += 1
        return self

    def _select_alpha(self, H: np.ndarray, y: np.ndarray) -> float:
        n = H.shape[0]
        n_fit = int(n * (1.0 - self.val_fraction))
        if n_fit < 1 or n_fit >= n:
            return getattr(self, "alpha_", 1.0)
        order = np.arange(n)
        if self.shuffle:
            order = np.random.default_rng([self.random_state, self.n_chunks_]).permutation(n)
        Y = one_hot(y, np.unique(y))
        fit, val = order[:n_fit], order[n_fit:]
        grid = self._grid()
        mse = ridge_path_mse(H[fit].astype(np.float64), Y[fit], H[val].astype(np.float64), Y[val], grid)
        return float(grid[int(np.argmin(mse))])

    def _update_gram(self, H: np.ndarray, y: np.ndarray, first: bool) -> None:
        m = H.shape[1]
        if first:
            self.gram_ = np.zeros((m, m), dtype=self.dtype)
        self.classes_, self.moment_ = grow_columns(self.classes_, getattr(self, "moment_", None), y, m)
        self.gram_ += H.T @ H
        self.moment_ += H.T @ one_hot(y, self.classes_)
        A = self.gram_ + self.alpha_ * np.eye(m, dtype=self.dtype)
        try:
            self.coef_ = linalg.solve(A, self.moment_, assume_a="pos").T
        except linalg.LinAlgError:  # λ below G's rounding (float32, λ = 1e-8): LU, as the reference
            self.coef_ = linalg.solve(A, self.moment_).T

    def _update_recursive(self, H: np.ndarray, y: np.ndarray, first: bool) -> None:
        m = H.shape[1]
        W = None if first else self.coef_.T
        self.classes_, W = grow_columns(self.classes_, W, y, m)
        Y = one_hot(y, self.classes_)
        if first:
            A = H.T @ H + self.alpha_ * np.eye(m, dtype=self.dtype)
            self.inverse_ = linalg.inv(A, overwrite_a=True).astype(self.dtype, copy=False)
            self.coef_ = (self.inverse_ @ (H.T @ Y)).T
            return
        R = self.inverse_
        for s in range(0, H.shape[0], _BLOCK):
            Hb, Yb = H[s:s + _BLOCK], Y[s:s + _BLOCK]
            RH = R @ Hb.T                                      # (M, b)
            K = np.eye(Hb.shape[0]) + Hb @ RH                  # (b, b), SPD
            R -= RH @ linalg.solve(K, RH.T, assume_a="pos")
            W += R @ (Hb.T @ (Yb - Hb @ W))
        self.inverse_, self.coef_ = R, W.T

    def _decision_function(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """``X @ coef_ᵀ`` (n, C) or only the ``columns``."""
        coef = self.coef_ if columns is None else self.coef_[columns]
        return X.astype(coef.dtype, copy=False) @ coef.T

    def get_statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"classes": self.classes_.copy(), "coef": self.coef_.copy(),
                                 "alpha": float(self.alpha_), "n_chunks": int(self.n_chunks_)}
        for name in ("gram", "moment", "inverse"):
            if hasattr(self, name + "_"):
                stats[name] = getattr(self, name + "_").copy()
        return stats

    def set_statistics(self, stats: dict[str, Any]) -> IncrementalRidge:
        self._check_params()
        self._reset()
        self.classes_ = np.asarray(stats["classes"])
        self.coef_ = np.asarray(stats["coef"])
        self.alpha_, self.n_chunks_ = float(stats["alpha"]), int(stats["n_chunks"])
        self.n_features_in_ = int(self.coef_.shape[1])
        for name in ("gram", "moment", "inverse"):
            if name in stats:
                setattr(self, name + "_", np.asarray(stats[name]))
        return self
