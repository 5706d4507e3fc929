"""FeCAM: Mahalanobis distance to per-class Gaussians with shrunk, normalised covariances.

Goswami et al., "FeCAM: Exploiting the Heterogeneity of Class Distributions in
Exemplar-Free Continual Learning", NeurIPS 2023 (Sec. 3-4; reference
github.com/dipamgoswami/FeCAM, ``FeCAM_vit_cifar100.py`` for pretrained ViTs and
``models/fecam.py`` for ResNets). With each feature transformed as
``x̃ = tukey(normalize(x))``, class ``c`` has mean ``μ_c`` and sample covariance
``Σ_c`` (``np.cov``, ``n_c − 1`` normalised), and::

    shrink(Σ)    = Σ + α₁·mean(diag Σ)·I + α₂·m_off(Σ)·(1 − I)          (``shrink_cov``)
    normalise(Σ) = Σ / (σ σᵀ),  σ = √diag Σ  (a correlation matrix)     (``normalize_cov``)
    d_c(x)       = (x̃ − μ_c)ᵀ normalise(shrink(Σ_c))⁻¹ (x̃ − μ_c)       (``_mahalanobis``)
    tukey(x)     = x^β (β > 0) or log x (β = 0)                        (``_tukeys_transform``)

``m_off`` is the mean of the non-zero off-diagonal entries (as the reference
masks exact zeros). ``predict`` is ``argmin_c d_c(x)``; scores are ``−d_c(x)``.
The reference inverts with ``pinv``; the shrunk matrix is positive definite
when ``α₁ > 0`` and its Cholesky inverse is used here (same numbers).

Per-class covariances cost ``C·D²`` numbers (two matrices per class here: the
scatter, kept for exact incremental updates, and the inverse). Memory-bounded
variants: ``covariance="shared"`` (one pooled within-class covariance, the
GDA statistic) and ``covariance="lowrank"`` (per class the exact diagonal plus
the top-``rank`` eigenpairs of the scatter, inverted with Woodbury's identity).
``partial_fit`` refuses a per-class model above ``memory_limit_gb`` before
allocating anything.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from scipy import linalg
from sklearn.utils import check_X_y

from strategies.estimators.class_stats import IncrementalClassStats, l2_normalize

_COVARIANCES = ("per_class", "shared", "lowrank")


def shrink_covariance(cov: np.ndarray, alpha1: float, alpha2: float) -> np.ndarray:
    """FeCAM's shrinkage (reference ``shrink_cov``) of one covariance (D, D)."""
    d = cov.shape[0]
    off = cov[~np.eye(d, dtype=bool)]
    nonzero = off[off != 0.0]
    off_mean = nonzero.mean() if nonzero.size else 0.0
    out = cov + alpha1 * np.mean(np.diag(cov)) * np.eye(d)
    return out + alpha2 * off_mean * (1.0 - np.eye(d)) if alpha2 else out


def correlation(cov: np.ndarray) -> np.ndarray:
    """``cov / (σ σᵀ)`` with ``σ = √diag(cov)`` (reference ``normalize_cov``)."""
    sd = np.sqrt(np.diag(cov))
    return cov / np.outer(sd, sd)


class FeCAM(IncrementalClassStats):
    """FeCAM classifier on frozen features, exactly incremental (``"lowrank"``: see Notes).

    Parameters
    ----------
    covariance : {"per_class", "shared", "lowrank"}
        Full covariance per class (the paper), one shared covariance, or
        diagonal plus rank-``rank`` per class.
    rank : int
        Eigenpairs kept per class for ``"lowrank"``.
    normalize : bool
        L2-normalise features first (the ViT reference does).
    tukey_beta : float or None
        Tukey's ladder of powers, applied after ``normalize``; ``None`` (off,
        as the ViT reference), ``0`` (log) or ``β > 0`` (ResNet reference: 0.5).
        Needs non-negative features (positive for ``0``).
    alpha1, alpha2 : float
        Shrinkage (ViT reference on CIFAR-100: 1 and 0; ImageNet-R: 10 and 10;
        ResNet reference: 1 and 1).
    shrink_repeats : int
        How often the shrinkage is applied (the ResNet reference applies it twice).
    normalize_covariance : bool
        Use the correlation matrix of the shrunk covariance (the reference does).
    memory_limit_gb : float
        Largest per-class model ``partial_fit`` will allocate.

    Attributes
    ----------
    classes_, class_count_, means_, n_features_in_
        As :class:`strategies.estimators.class_stats.IncrementalClassStats`.
    precisions_ : ndarray, shape (C, D, D) or (D, D)
        Inverse of the normalised shrunk covariance (``"per_class"``, ``"shared"``).

    Notes
    -----
    Per-class scatters are merged with Chan, Golub & LeVeque's update per class,
    so any chunking equals one fit. ``"lowrank"`` is exact while every class
    arrives in one call (class-incremental tasks); a class split across calls
    merges its kept eigenpairs with the new samples (incremental PCA), which
    drops the part of the old scatter outside the kept rank. It supports
    ``alpha2 = 0`` only (an all-ones term would break the structure).
    """

    def __init__(self, *, covariance: str = "per_class", rank: int = 16, normalize: bool = True,
                 tukey_beta: float | None = None, alpha1: float = 1.0, alpha2: float = 0.0,
                 shrink_repeats: int = 1, normalize_covariance: bool = True,
                 memory_limit_gb: float = 8.0) -> None:
        self.covariance = covariance
        self.rank = rank
        self.normalize = normalize
        self.tukey_beta = tukey_beta
        self.alpha1 = alpha1
        self.alpha2 = alpha2
        self.shrink_repeats = shrink_repeats
        self.normalize_covariance = normalize_covariance
        self.memory_limit_gb = memory_limit_gb

    @property
    def _track_scatter(self) -> bool:  # the pooled scatter of IncrementalClassStats
        return self.covariance == "shared"

    def _check_params(self) -> None:
        if self.covariance not in _COVARIANCES:
            raise ValueError(f"FeCAM covariance must be one of {_COVARIANCES}, got {self.covariance!r}.")
        if isinstance(self.rank, bool) or not isinstance(self.rank, Integral) or self.rank < 1:
            raise ValueError(f"FeCAM rank must be a positive integer, got {self.rank!r}.")
        b = self.tukey_beta
        if b is not None and (isinstance(b, bool) or not isinstance(b, Real) or b < 0):
            raise ValueError(f"FeCAM tukey_beta must be None, 0 (log) or > 0, got {b!r}.")
        for name in ("alpha1", "alpha2", "memory_limit_gb"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Real) or v < 0:
                raise ValueError(f"FeCAM {name} must be a number >= 0, got {v!r}.")
        r = self.shrink_repeats
        if isinstance(r, bool) or not isinstance(r, Integral) or r < 0:
            raise ValueError(f"FeCAM shrink_repeats must be an integer >= 0, got {r!r}.")
        if self.covariance == "lowrank" and self.alpha2:
            raise ValueError("FeCAM covariance='lowrank' supports alpha2=0 only; use "
                             "covariance='per_class' or 'shared' for alpha2 > 0.")

    def _transform(self, X: np.ndarray) -> np.ndarray:
        if self.normalize:
            X = l2_normalize(X)
        if self.tukey_beta is None:
            return X
        if (X < 0).any() or (self.tukey_beta == 0 and (X == 0).any()):
            raise ValueError(f"FeCAM tukey_beta={self.tukey_beta} needs non-negative features "
                             "(positive for 0, the log); these have negative values (CLIP "
                             "features do): use tukey_beta=None.")
        return np.log(X) if self.tukey_beta == 0 else X**self.tukey_beta

    # -- memory ----------------------------------------------------------------
    def memory_needed(self, n_classes: int, dim: int) -> dict[str, int]:
        """Bytes the fitted model of ``n_classes`` classes in ``dim`` dimensions holds, per variant."""
        k = min(self.rank, dim)
        return {"per_class": 8 * n_classes * (2 * dim * dim + 2 * dim),
                "shared": 8 * (2 * dim * dim + 2 * n_classes * dim),
                "lowrank": 8 * n_classes * (2 * dim * k + k * k + 5 * dim)}

    def _check_memory(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.covariance == "shared":
            return
        seen = getattr(self, "classes_", np.array([]))
        n_classes = np.union1d(seen, np.unique(y)).size
        need = self.memory_needed(n_classes, X.shape[1])
        if need[self.covariance] > self.memory_limit_gb * 1e9:
            gb = {k: v / 1e9 for k, v in need.items()}
            raise ValueError(
                f"FeCAM covariance={self.covariance!r} needs {gb[self.covariance]:.2f} GB for "
                f"{n_classes} classes in {X.shape[1]} dimensions, above memory_limit_gb="
                f"{self.memory_limit_gb}; use covariance='shared' ({gb['shared']:.3f} GB) or "
                f"covariance='lowrank' (rank={self.rank}: {gb['lowrank']:.2f} GB), or raise "
                "memory_limit_gb.")

    # -- statistics ------------------------------------------------------------
    def _reset(self) -> None:
        super()._reset()
        for name in ("_class_scatter", "_basis", "_eigen", "_diag", "precisions_", "_lowrank",
                     "_touched", "_old_pos"):
            if hasattr(self, name):
                delattr(self, name)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> FeCAM:
        """Update class counts, means and covariances with one chunk; returns self."""
        self._check_params()
        X, y = check_X_y(X, y, dtype=np.float64)
        self._check_memory(X, y)
        fitted = hasattr(self, "classes_")
        prev = (self.classes_.copy(), self.class_count_.copy(), self._class_sum.copy()) if fitted else None
        self._deferred = True
        try:
            super().partial_fit(X, y, classes)  # validates; counts and sums
        finally:
            self._deferred = False
        if self.covariance != "shared":
            self._update_classes(self._transform(X), y, prev)
            self._touched = np.searchsorted(self.classes_, np.unique(y))
            self._old_pos = np.searchsorted(self.classes_, prev[0]) if prev else np.array([], int)
        try:
            self._finalize()
        finally:
            self._touched = self._old_pos = None
        return self

    def _update_classes(self, X: np.ndarray, y: np.ndarray, prev: tuple | None) -> None:
        C, d = self.classes_.size, X.shape[1]
        k = min(self.rank, d)
        lowrank = self.covariance == "lowrank"
        old_pos = np.searchsorted(self.classes_, prev[0]) if prev else np.array([], dtype=int)
        names = ("_basis", "_eigen", "_diag") if lowrank else ("_class_scatter",)
        shapes = ((C, d, k), (C, k), (C, d)) if lowrank else ((C, d, d),)
        for name, shape in zip(names, shapes):
            grown = np.zeros(shape)
            if prev:
                grown[old_pos] = getattr(self, name)
            setattr(self, name, grown)
        for label in np.unique(y):
            c = int(np.searchsorted(self.classes_, label))
            Xc = X[y == label]
            mean_b = Xc.mean(0)
            centred = Xc - mean_b
            n_a, delta, w = 0.0, np.zeros(d), 0.0
            if prev is not None:
                j = np.searchsorted(prev[0], label)
                if j < prev[0].size and prev[0][j] == label:
                    n_a = prev[1][j]
                    delta = mean_b - prev[2][j] / n_a
                    w = n_a * len(Xc) / (n_a + len(Xc))
            if not lowrank:
                self._class_scatter[c] += centred.T @ centred + w * np.outer(delta, delta)
                continue
            self._diag[c] += np.einsum("ij,ij->j", centred, centred) + w * delta**2
            B = np.hstack([self._basis[c] * np.sqrt(self._eigen[c]), centred.T,
                           np.sqrt(w) * delta[:, None]])
            U, s, _ = linalg.svd(B, full_matrices=False)
            r = min(k, s.size)
            self._basis[c], self._eigen[c] = 0.0, 0.0
            self._basis[c][:, :r], self._eigen[c][:r] = U[:, :r], s[:r] ** 2

    # -- derived model -----------------------------------------------------------
    def _shrunk(self, cov: np.ndarray) -> np.ndarray:
        for _ in range(self.shrink_repeats):
            cov = shrink_covariance(cov, self.alpha1, self.alpha2)
        return correlation(cov) if self.normalize_covariance else cov

    @staticmethod
    def _inverse(cov: np.ndarray) -> np.ndarray:
        try:
            P = linalg.cho_solve(linalg.cho_factor(cov, lower=True), np.eye(cov.shape[0]))
        except linalg.LinAlgError:
            P = linalg.pinvh(cov)
        return (P + P.T) / 2.0

    def _finalize(self) -> None:
        if getattr(self, "_deferred", False):
            return
        d = self.means_.shape[1]
        n = self.class_count_
        if self.covariance == "shared":
            dof = max(n.sum() - n.size, 1.0)
            self.precisions_ = self._inverse(self._shrunk(self._scatter / dof)) \
                if np.trace(self._scatter) > 0 else np.eye(d)
        elif self.covariance == "per_class":
            self.precisions_ = self._grown(getattr(self, "precisions_", None), (n.size, d, d))
            for c in self._to_update(n.size):
                if n[c] < 2 or not np.trace(self._class_scatter[c]) > 0:
                    self.precisions_[c] = np.eye(d)  # no spread known: Euclidean
                else:
                    self.precisions_[c] = self._inverse(self._shrunk(self._class_scatter[c] / (n[c] - 1)))
        else:
            self._finalize_lowrank(n)

    def _to_update(self, n_classes: int) -> np.ndarray:
        """Classes whose inverse must be recomputed: those of the last chunk, or all."""
        touched = getattr(self, "_touched", None)
        return np.arange(n_classes) if touched is None else touched

    def _grown(self, old: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
        """``old`` per-class arrays moved to the current class positions (new rows empty)."""
        out = np.empty(shape)
        if old is not None and getattr(self, "_touched", None) is not None:
            out[self._old_pos] = old
        return out

    def _finalize_lowrank(self, n: np.ndarray) -> None:
        """Per class ``Σ = diag(a) + U Uᵀ`` after shrinkage and normalisation, and the
        Cholesky factor of Woodbury's core ``I + Uᵀ diag(1/a) U``."""
        C, d, k = self._basis.shape
        old = getattr(self, "_lowrank", (None, None, None))
        a, U, L = (self._grown(o, shape) for o, shape in zip(old, ((C, d), (C, d, k), (C, k, k))))
        for c in self._to_update(C):
            a[c], U[c], L[c] = 1.0, 0.0, np.eye(k)
            if n[c] < 2 or not self._diag[c].sum() > 0:
                continue
            total = self._diag[c] / (n[c] - 1)                              # diag Σ, exact
            low = self._basis[c] * np.sqrt(self._eigen[c] / (n[c] - 1))     # Σ ≈ low lowᵀ + diag
            resid = np.maximum(total - np.einsum("ij,ij->i", low, low), 0.0)
            for _ in range(self.shrink_repeats):
                bump = self.alpha1 * total.mean()
                resid, total = resid + bump, total + bump
            if self.normalize_covariance:
                sd = np.sqrt(total)
                resid, low = resid / total, low / sd[:, None]
            a[c], U[c] = resid, low
            core = np.eye(k) + (low / resid[:, None]).T @ low
            L[c] = linalg.cholesky(core, lower=True)
        self._lowrank = (a, U, L)

    def _decision_function(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Negative Mahalanobis distances ``−d_c(x)``, shape (n, C) (or (n, len(columns)))."""
        cols = np.arange(self.classes_.size) if columns is None else np.asarray(columns)
        out = np.empty((X.shape[0], cols.size))
        for i, c in enumerate(cols):
            delta = X - self.means_[c]
            if self.covariance == "per_class":
                out[:, i] = np.einsum("ij,ij->i", delta @ self.precisions_[c], delta)
            elif self.covariance == "shared":
                out[:, i] = np.einsum("ij,ij->i", delta @ self.precisions_, delta)
            else:
                a, U, L = (m[c] for m in self._lowrank)
                scaled = delta / a
                proj = linalg.solve_triangular(L, U.T @ scaled.T, lower=True)
                out[:, i] = np.einsum("ij,ij->i", scaled, delta) - np.einsum("ij,ij->j", proj, proj)
        return -out

    def get_statistics(self) -> dict[str, Any]:
        stats = super().get_statistics()
        for name in ("_class_scatter", "_basis", "_eigen", "_diag"):
            if hasattr(self, name):
                stats[name[1:]] = getattr(self, name).copy()
        return stats

    def set_statistics(self, stats: dict[str, Any]) -> FeCAM:
        self._deferred = True
        try:
            super().set_statistics(stats)
        finally:
            self._deferred = False
        for name in ("class_scatter", "basis", "eigen", "diag"):
            if name in stats:
                setattr(self, "_" + name, np.asarray(stats[name], dtype=np.float64))
        self._finalize()
        return self
