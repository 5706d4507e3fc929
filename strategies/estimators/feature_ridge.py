"""Ridge regression over random ReLU features, solved exactly in whichever form is cheaper.

RanPAC (McDonnell et al., NeurIPS 2023, Sec. 4.2) and primal RAIL (Xu et al., NeurIPS 2024,
Sec. 4.2) fit, on random features ``H = max(0, X·W)`` (n, M) of all data seen so far and
one-hot targets ``Y`` (n, C), the ridge head ::

    B = (HᵀH + λI)⁻¹ HᵀY = Hᵀ (HHᵀ + λI)⁻¹ Y            (M, C)

The two sides are equal (the push-through identity ``(HᵀH + λI)⁻¹Hᵀ = Hᵀ(HHᵀ + λI)⁻¹``;
Saunders, Gammerman & Vovk, "Ridge Regression Learning Algorithm in Dual Variables",
ICML 1998, Eq. 8). Which one to solve:

``"dual"`` (while n ≤ M)
    keeps the inputs ``X`` (n, D) seen so far, builds ``K = HHᵀ`` (n, n) from column blocks
    of ``H`` (never the whole (n, M) matrix), factorises ``K + λI`` once and sets
    ``B = Hᵀα`` with ``α = (K + λI)⁻¹Y``: O(n·D·M + n²·M + n³) time and O(n² + n·D) memory
    per task, instead of RanPAC's O(M³) solve of an M×M ``G`` (M = 10,000: 800 MB).
``"primal"`` (once n > M)
    keeps ``G = HᵀH`` and ``Q = HᵀY`` (built once from the stored inputs when the number of
    samples first exceeds M, then updated by each chunk) and factorises ``G + λI`` once per
    task, in place: ``G`` lives in the upper triangle of one M×M array, the Cholesky factor
    is written into its lower triangle, so the peak is about one ``G`` (no copy).
``"auto"``
    the dual form while n ≤ M, then the primal form.

Both are exact: any chunking gives the head of one ridge fit on all data (up to rounding).
The solve reports the 1-norm condition number of the factorised system (LAPACK ``?pocon``):
with λ = 1e-8 and fewer samples than features, ``G + λI`` has M − n eigenvalues equal to λ,
so the primal system's condition number reaches 10¹⁴–10¹⁵, where two correct solvers differ
in the head by percent; ``K + λI`` of the same data is usually far better conditioned.
"""

from __future__ import annotations

import os
from numbers import Integral, Real
from typing import Any

import numpy as np
from scipy import linalg
from scipy.linalg import blas, lapack
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from strategies.estimators.incremental_classifier import IncrementalClassifier, grow_columns
from strategies.estimators.random_features import RandomReLUFeatures
from strategies.estimators.ridge import RANPAC_ALPHAS, one_hot

#: condition number above which a solve is flagged (float64 keeps ~16 digits)
ILL_CONDITIONED = 1e12
_BLOCK_BYTES = 32 * 2**20  # scratch of one block of H


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes, or ``None`` where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(need: int, what: str, fix: str) -> None:
    """Raise ``MemoryError`` naming ``what`` and ``fix`` when ``need`` bytes exceed what is free."""
    free = available_memory_bytes()
    if free is not None and need > free:
        raise MemoryError(f"{what} needs {need / 2**30:.2f} GiB but {free / 2**30:.2f} GiB are "
                          f"available; {fix}.")


def _mirror_upper(G: np.ndarray, block: int = 1024) -> None:
    """Copy the upper triangle of square ``G`` onto its lower triangle, block by block."""
    m = G.shape[0]
    for s in range(0, m, block):
        e = min(s + block, m)
        G[s:e, :s] = G[:s, s:e].T
        d = G[s:e, s:e]
        G[s:e, s:e] = np.triu(d) + np.triu(d, 1).T


def _one_norm(G: np.ndarray, block: int = 1024) -> float:
    """``max_j Σ_i |G_ij|`` of a symmetric ``G``, block by block."""
    return max(float(np.abs(G[:, s:s + block]).sum(axis=0).max()) for s in range(0, G.shape[0], block))


def cholesky_solve_in_place(G: np.ndarray, Q: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """Solve ``(G + λI) B = Q`` keeping ``G``; returns ``(B, condition number)``.

    ``G`` (M, M), C-contiguous, holds the matrix in its upper triangle; its strict lower
    triangle is scratch (overwritten by the Cholesky factor) and its upper triangle and
    diagonal are as before on return. ``Q`` (M, C). Raises ``numpy.linalg.LinAlgError``
    when ``G + λI`` is not positive definite at this precision.
    """
    m = G.shape[0]
    potrf, potrs, pocon = lapack.get_lapack_funcs(("potrf", "potrs", "pocon"), (G,))
    diag = G.diagonal().copy()
    _mirror_upper(G)
    anorm = _one_norm(G) + lam
    G.flat[:: m + 1] += lam
    try:
        # G.T is Fortran-ordered: its upper triangle is G's lower one (the scratch)
        factor, info = potrf(G.T, lower=0, overwrite_a=1, clean=0)
        if info != 0:
            raise np.linalg.LinAlgError(f"G + λI is not positive definite (leading minor {info}).")
        B, info = potrs(factor, np.asarray(Q, dtype=G.dtype), lower=0)
        rcond, _ = pocon(factor, anorm)
    finally:
        G.flat[:: m + 1] = diag
    return B, (float("inf") if rcond == 0 else 1.0 / float(rcond))


def dual_solve(K: np.ndarray, Y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """``α = (K + λI)⁻¹ Y`` for a Gram ``K`` (n, n) (not modified); returns ``(α, condition number)``."""
    A = K + lam * np.eye(K.shape[0], dtype=K.dtype)
    anorm = float(np.abs(A).sum(axis=0).max())
    factor, lower = linalg.cho_factor(A, lower=False, overwrite_a=True, check_finite=False)
    alpha = linalg.cho_solve((factor, lower), Y, check_finite=False)
    pocon = lapack.get_lapack_funcs("pocon", (factor,))
    rcond, _ = pocon(np.asfortranarray(factor), anorm)
    return alpha, (float("inf") if rcond == 0 else 1.0 / float(rcond))


def gram_path_mse(K_fit: np.ndarray, K_val_fit: np.ndarray, Y_fit: np.ndarray, Y_val: np.ndarray,
                  alphas: np.ndarray) -> np.ndarray:
    """Validation MSE of the ridge fit for every λ, from Gram matrices only.

    With ``K_fit = H_f H_fᵀ = U diag(e) Uᵀ`` (n_f, n_f) and ``K_val_fit = H_v H_fᵀ`` (n_v, n_f),
    the prediction of λ's head on the validation rows is ``K_val_fit U diag(1/(e + λ)) UᵀY_fit``
    (the dual form of :func:`strategies.estimators.ridge.ridge_path_mse`). Shape (len(alphas),).
    """
    e, U = linalg.eigh(K_fit)
    e = np.maximum(e, 0.0)
    P, B = K_val_fit @ U, U.T @ Y_fit
    return np.array([np.mean((P @ (B / (e + lam)[:, None]) - Y_val) ** 2) for lam in alphas])


class RandomFeatureRidge(IncrementalClassifier):
    """Ridge classifier on random ReLU features, exactly incremental, dual or primal.

    Parameters
    ----------
    n_components : int
        Random features M (RanPAC: 10,000; RAIL: 15,000).
    distribution : {"normal", "uniform"}
        Projection entries (RanPAC: N(0, 1); RAIL: U(−1/√D, 1/√D)), see
        :class:`~strategies.estimators.random_features.RandomReLUFeatures`.
    alpha : float > 0 or "auto"
        λ; ``"auto"`` chooses it on every chunk from ``alpha_grid`` by the MSE of the one-hot
        targets on the last ``val_fraction`` of the (seeded, shuffled) chunk, as RanPAC's
        ``optimise_ridge_parameter``.
    alpha_grid : sequence of float or None
        Default ``10^-8 … 10^8``.
    val_fraction : float in (0, 1)
    solver : {"auto", "dual", "primal"}
        See the module docstring.
    dtype : {"float64", "float32"}
        Arithmetic and storage of the projection, ``G`` and ``K``.
    device : str or None
        ``None``: NumPy/SciPy on the CPU (the reference path). A torch device (``"cuda"``,
        ``"cuda:1"``, ``"cpu"``): the products over random-feature blocks (``K``, ``Hᵀα``) and
        the primal Cholesky solve run there with torch in ``dtype``; the state stays in NumPy.
    random_state : int

    Attributes
    ----------
    projection_ : RandomReLUFeatures
    classes_ : ndarray, shape (C,)
    coef_ : ndarray, shape (C, M)
    alpha_ : float
        λ of the last chunk.
    condition_number_ : float
        1-norm condition number of the system factorised for the last chunk.
    form_ : {"dual", "primal"}
        The form the last chunk was solved in.
    inputs_ : ndarray, shape (n, D)
        Dual form: the inputs seen so far (float64).
    targets_ : ndarray, shape (n,)
        Dual form: their labels.
    kernel_ : ndarray, shape (n, n)
        Dual form: ``K = HHᵀ`` of the inputs seen so far (each chunk adds its rows).
    gram_ : ndarray, shape (M, M)
        Primal form: ``HᵀH`` in the upper triangle (the lower one is scratch).
    moment_ : ndarray, shape (M, C)
        Primal form: ``HᵀY``.
    n_seen_, n_chunks_, n_features_in_ : int
    """

    def __init__(self, *, n_components: int = 10_000, distribution: str = "normal",
                 alpha: float | str = "auto", alpha_grid: Any = None, val_fraction: float = 0.2,
                 solver: str = "auto", dtype: str = "float64", device: str | None = None,
                 random_state: int = 0) -> None:
        self.n_components = n_components
        self.distribution = distribution
        self.alpha = alpha
        self.alpha_grid = alpha_grid
        self.val_fraction = val_fraction
        self.solver = solver
        self.dtype = dtype
        self.device = device
        self.random_state = random_state

    # -- parameters and state -------------------------------------------------------------
    def _check_params(self) -> None:
        name = type(self).__name__
        m = self.n_components
        if isinstance(m, bool) or not isinstance(m, Integral) or m < 1:
            raise ValueError(f"{name} n_components must be a positive integer, got {m!r}.")
        a = self.alpha
        if a != "auto" and (isinstance(a, bool) or not isinstance(a, Real) or not a > 0):
            raise ValueError(f"{name} alpha must be 'auto' or a number > 0, got {a!r}.")
        grid = self._grid()
        if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
            raise ValueError(f"{name} alpha_grid must be non-empty, finite and > 0, "
                             f"got {self.alpha_grid!r}.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"{name} val_fraction must lie in (0, 1), got {self.val_fraction!r}.")
        if self.solver not in ("auto", "dual", "primal"):
            raise ValueError(f"{name} solver must be 'auto', 'dual' or 'primal', got {self.solver!r}.")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"{name} dtype must be 'float32' or 'float64', got {self.dtype!r}.")
        if self.distribution not in ("normal", "uniform"):
            raise ValueError(f"{name} distribution must be 'normal' or 'uniform', "
                             f"got {self.distribution!r}.")

    def _grid(self) -> np.ndarray:
        return np.asarray(RANPAC_ALPHAS if self.alpha_grid is None else self.alpha_grid,
                          dtype=float).ravel()

    _STATE = ("projection_", "classes_", "coef_", "alpha_", "condition_number_", "form_",
              "inputs_", "targets_", "kernel_", "gram_", "moment_", "n_seen_", "n_chunks_", "n_features_in_")

    def _reset(self) -> None:
        for name in self._STATE:
            if hasattr(self, name):
                delattr(self, name)

    # -- random features in blocks ---------------------------------------------------------
    def _block_width(self, n_rows: int) -> int:
        """Feature columns per block so that a block of ``n_rows`` rows is ~32 MB."""
        return max(64, _BLOCK_BYTES // (8 * max(n_rows, 1)))

    def _features(self, X: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
        W = self.projection_.components_[:, start:stop]
        return np.maximum(X.astype(W.dtype, copy=False) @ W, 0.0)

    def _gram(self, A: np.ndarray, B: np.ndarray | None = None) -> np.ndarray:
        """``H(A) H(B)ᵀ`` (len(A), len(B)), summed over column blocks of the features."""
        if self.device is not None:
            from strategies.estimators.torch_ridge import relu_gram

            return relu_gram(A, B, self.projection_.components_, self.device,
                             self._block_width(len(A) + (0 if B is None else len(B))))
        width = self._block_width(len(A) + (0 if B is None else len(B)))
        out = np.zeros((len(A), len(A) if B is None else len(B)), dtype=self.dtype)
        for s in range(0, self.n_components, width):
            Ha = self._features(A, s, s + width)
            out += Ha @ (Ha if B is None else self._features(B, s, s + width)).T
        return out

    # -- fitting ---------------------------------------------------------------------------
    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> RandomFeatureRidge:
        """Add the chunk ``X`` (n, D), ``y`` (n,) and re-solve; returns self."""
        self._check_params()
        first = not hasattr(self, "classes_")
        X, y = validate_data(self, X, y, reset=first, dtype=np.float64)
        check_classification_targets(y)
        if classes is not None and np.setdiff1d(y, classes).size:
            raise ValueError(f"labels {np.setdiff1d(y, classes)[:5].tolist()} are not in "
                             f"classes={np.unique(classes).tolist()[:10]}.")
        if first:
            self.projection_ = RandomReLUFeatures(
                self.n_components, distribution=self.distribution,
                random_state=self.random_state, dtype=self.dtype).fit(X)
            self.classes_, self.n_seen_, self.n_chunks_ = np.unique(y)[:0], 0, 0
        n_total = self.n_seen_ + len(y)
        dual = self.solver == "dual" or (self.solver == "auto" and n_total <= self.n_components
                                         and not hasattr(self, "gram_"))
        # the chunk's own Gram block serves the λ search and the dual system
        K_new = self._gram(X) if dual or (self.alpha == "auto" and len(y) <= self.n_components) \
            else None
        self.alpha_ = self._select_alpha(X, y, K_new) if self.alpha == "auto" else float(self.alpha)
        if dual:
            self._fit_dual(X, y, K_new)
        else:
            self._fit_primal(X, y)
        self.n_seen_, self.n_chunks_ = n_total, self.n_chunks_ + 1
        return self

    def _select_alpha(self, X: np.ndarray, y: np.ndarray, K: np.ndarray | None) -> float:
        n = len(y)
        n_fit = int(n * (1.0 - self.val_fraction))
        if n_fit < 1 or n_fit >= n:
            return getattr(self, "alpha_", 1.0)
        order = np.random.default_rng([self.random_state, self.n_chunks_]).permutation(n)
        fit, val = order[:n_fit], order[n_fit:]
        Y = one_hot(y, np.unique(y))
        grid = self._grid()
        if K is not None:
            K = K.astype(np.float64, copy=False)
            mse = gram_path_mse(K[np.ix_(fit, fit)], K[np.ix_(val, fit)], Y[fit], Y[val], grid)
        else:
            from strategies.estimators.ridge import ridge_path_mse

            H = self._features(X).astype(np.float64)
            mse = ridge_path_mse(H[fit], Y[fit], H[val], Y[val], grid)
        return float(grid[int(np.argmin(mse))])

    def _fit_dual(self, X: np.ndarray, y: np.ndarray, K_new: np.ndarray) -> None:
        n = self.n_seen_ + len(y)
        check_memory(8 * (2 * n * n + n * self.n_features_in_),
                     f"the dual ridge system of {n} samples",
                     "use solver='primal' (memory M² instead of n²)")
        if self.n_seen_ == 0:
            self.inputs_, self.targets_, self.kernel_ = X, y, K_new
        else:
            cross = self._gram(self.inputs_, X)
            self.kernel_ = np.block([[self.kernel_, cross], [cross.T, K_new]])
            self.inputs_ = np.vstack([self.inputs_, X])
            self.targets_ = np.concatenate([self.targets_, y])
        self.classes_ = np.union1d(self.classes_, y)
        alpha, self.condition_number_ = dual_solve(
            self.kernel_, one_hot(self.targets_, self.classes_), self.alpha_)
        self.coef_, self.form_ = self._dual_to_primal(alpha).T, "dual"

    def _dual_to_primal(self, alpha: np.ndarray) -> np.ndarray:
        """``B = H(inputs)ᵀ α`` (M, C), block by block of feature columns."""
        width = self._block_width(len(self.inputs_))
        if self.device is not None:
            from strategies.estimators.torch_ridge import relu_transpose_product

            return relu_transpose_product(self.inputs_, self.projection_.components_, alpha,
                                          self.device, width)
        coef = np.zeros((self.n_components, alpha.shape[1]), dtype=self.dtype)
        for s in range(0, self.n_components, width):
            coef[s:s + width] = self._features(self.inputs_, s, s + width).T @ alpha
        return coef

    def _fit_primal(self, X: np.ndarray, y: np.ndarray) -> None:
        m = self.n_components
        if not hasattr(self, "gram_"):
            itemsize = np.dtype(self.dtype).itemsize
            check_memory(itemsize * m * m + 8 * m * max(self.classes_.size, 1),
                         f"the {m}×{m} Gram matrix (n_components={m}, dtype={self.dtype!r})",
                         "lower n_components or use dtype='float32' (half the memory)")
            self.gram_ = np.zeros((m, m), dtype=self.dtype)
            self.classes_, self.moment_ = self.classes_[:0], None  # rebuilt from the inputs
            if self.n_seen_:
                self._accumulate(self.inputs_, self.targets_)
            for name in ("inputs_", "targets_", "kernel_"):
                if hasattr(self, name):
                    delattr(self, name)
        self._accumulate(X, y)
        try:
            if self.device is not None:
                from strategies.estimators.torch_ridge import cholesky_solve_upper

                B, self.condition_number_ = cholesky_solve_upper(self.gram_, self.moment_,
                                                                 self.alpha_, self.device)
            else:
                B, self.condition_number_ = cholesky_solve_in_place(self.gram_, self.moment_,
                                                                    self.alpha_)
        except np.linalg.LinAlgError:  # λ below G's rounding (float32, λ = 1e-8): LU on a copy
            A = np.triu(self.gram_) + np.triu(self.gram_, 1).T + self.alpha_ * np.eye(m)
            B, self.condition_number_ = linalg.solve(A, self.moment_), float(np.linalg.cond(A, 1))
        self.coef_, self.form_ = np.asarray(B).T, "primal"

    def _accumulate(self, X: np.ndarray, y: np.ndarray) -> None:
        """``G += HᵀH`` (upper triangle, BLAS ``syrk`` in place) and ``Q += HᵀY`` over row blocks."""
        self.classes_, self.moment_ = grow_columns(self.classes_, self.moment_, y, self.n_components)
        syrk = blas.get_blas_funcs("syrk", (self.gram_,))
        rows = max(1, _BLOCK_BYTES // (8 * self.n_components))
        for s in range(0, len(y), rows):
            H = self._features(X[s:s + rows])
            # gram_.T is Fortran-ordered; its lower triangle is gram_'s upper one
            syrk(alpha=1.0, a=H, trans=1, beta=1.0, c=self.gram_.T, lower=1, overwrite_c=1)
            self.moment_ += H.T @ one_hot(y[s:s + rows], self.classes_)

    # -- prediction and state ----------------------------------------------------------------
    def _decision_function(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """``h(x)·B`` (n, C) or only ``columns``."""
        coef = self.coef_ if columns is None else self.coef_[columns]
        return self._features(X) @ coef.T

    def statistics_nbytes(self) -> int:
        """Bytes of the fitted state, without copying it."""
        return sum(getattr(self, k).nbytes for k in self._STATE
                   if isinstance(getattr(self, k, None), np.ndarray)) + (
            self.projection_.components_.nbytes if hasattr(self, "projection_") else 0)

    def get_statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "components": self.projection_.components_.copy(), "classes": self.classes_.copy(),
            "coef": self.coef_.copy(), "alpha": float(self.alpha_),
            "condition_number": float(self.condition_number_), "n_seen": int(self.n_seen_),
            "n_chunks": int(self.n_chunks_), "n_features_in": int(self.n_features_in_)}
        for name in ("inputs", "targets", "kernel", "gram", "moment"):
            if hasattr(self, name + "_"):
                stats[name] = getattr(self, name + "_").copy()
        return stats

    def set_statistics(self, stats: dict[str, Any]) -> RandomFeatureRidge:
        self._check_params()
        self._reset()
        self.n_features_in_ = int(stats["n_features_in"])
        self.projection_ = RandomReLUFeatures(self.n_components, distribution=self.distribution,
                                              random_state=self.random_state, dtype=self.dtype)
        self.projection_.components_ = np.asarray(stats["components"])
        self.projection_.n_features_in_ = self.n_features_in_
        self.classes_, self.coef_ = np.asarray(stats["classes"]), np.asarray(stats["coef"])
        self.alpha_, self.form_ = float(stats["alpha"]), "primal" if "gram" in stats else "dual"
        self.condition_number_ = float(stats["condition_number"])
        self.n_seen_, self.n_chunks_ = int(stats["n_seen"]), int(stats["n_chunks"])
        for name in ("inputs", "targets", "kernel", "gram", "moment"):
            if name in stats:
                setattr(self, name + "_", np.array(stats[name]))
        return self
