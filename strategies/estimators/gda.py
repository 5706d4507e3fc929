"""Gaussian discriminant analysis (shared covariance) as an incremental scikit-learn estimator.

The covariance estimator is that of Wang et al., "A Hard-to-Beat Baseline for
Training-free CLIP-based Adaptation", ICLR 2024, checked against their public
code (github.com/mrflogs/ICLR24, ``main_few_shots.py``). The pooled
within-class scatter is merged with Chan's formula in
:class:`~strategies.estimators.class_stats.IncrementalClassStats`.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from scipy import linalg
from scipy.linalg import lapack
from sklearn.utils.validation import check_is_fitted

from strategies.estimators.class_stats import IncrementalClassStats


def condition_number(A: np.ndarray, factor: tuple[np.ndarray, bool]) -> float:
    """1-norm condition number of SPD ``A`` from its ``cho_factor`` (LAPACK ``?pocon`` estimate)."""
    c, lower = factor
    pocon = lapack.get_lapack_funcs("pocon", (c,))
    rcond, _ = pocon(np.asfortranarray(c), float(np.abs(A).sum(axis=0).max()),
                     uplo="L" if lower else "U")
    return float("inf") if rcond == 0 else 1.0 / float(rcond)


class GDA(IncrementalClassStats):
    """Gaussian discriminant analysis with a shared, shrunk covariance, fitted incrementally.

    Each class is modelled as ``N(μ_c, Σ)``; Bayes' rule gives the linear head
    (Wang et al. 2024; Hastie et al., *The Elements of Statistical
    Learning*, 2nd ed., eq. 4.10)::

        coef_      = means_ @ precision_                               (C, D)
        intercept_ = log(priors_) − ½ · diag(means_ @ precision_ @ means_ᵀ)  (C,)
        score(x)   = x @ coef_ᵀ + intercept_

    With ``W`` the pooled within-class scatter, ``N`` the number of samples
    and ``D`` the dimension, the shared covariance is

    ``shrinkage="ks"`` (the "KS estimator" of Wang et al. 2024, as computed in
        ``main_few_shots.py`` of their code): with ``S = W / (N − 1)``,
        ``precision_ = D · pinv((N − 1)·S + tr(S)·I)``, i.e.
        ``covariance_ = (W + tr(S)·I) / D``.
    ``shrinkage=α`` in [0, 1]: with ``S = W / N``,
        ``covariance_ = (1 − α)·S + α·tr(S)/D·I``, scikit-learn's
        ``shrunk_covariance``; with ``priors="empirical"`` the predictions equal
        ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage=α)``.
    ``shrinkage="auto"``: Ledoit & Wolf (2004, "A well-conditioned estimator
        for large-dimensional covariance matrices", Lemma 3.2–3.4) coefficient
        computed as ``sklearn.covariance.ledoit_wolf_shrinkage`` on the
        within-class-centred samples, then the same shrinkage as a float. Its
        fourth-moment term ``Σ_i ‖x_i − μ_{y_i}‖⁴`` is exact when each class
        arrives in a single call (``fit``, class-incremental tasks); for a
        class split over calls, each call's samples are centred on that call's
        class mean. (scikit-learn's LDA instead standardises and shrinks each
        class covariance separately, so predictions are close, not equal.)
    ``shrinkage=None``: ``covariance_ = W / N`` (maximum likelihood).

    If ``W = 0`` (every class has one sample, or all samples of a class are
    equal) no spread is known and ``covariance_`` is the identity: the rule
    becomes nearest-mean with priors.

    Parameters
    ----------
    shrinkage : {"ks", "auto"}, float in [0, 1] or None
    priors : {"empirical", "uniform"} or array-like of shape (C,)
        Class priors; an array is normalised to sum to 1 and must match the
        number of classes fitted so far. The GDA paper uses uniform priors.
    solver : {"cholesky", "pinv"}
        How ``covariance_`` is inverted. With a shrinkage other than ``None``
        the covariance is positive definite and both agree; ``"pinv"`` also
        handles singular covariances.

    Attributes
    ----------
    classes_ : ndarray, shape (C,)
    class_count_ : ndarray, shape (C,)
    means_ : ndarray, shape (C, D)
    priors_ : ndarray, shape (C,)
    covariance_ : ndarray, shape (D, D)
    precision_ : ndarray, shape (D, D)
    coef_ : ndarray, shape (C, D)
    intercept_ : ndarray, shape (C,)
    shrinkage_ : float
        Coefficient actually used (``nan`` for ``"ks"``, which has its own form).
    condition_number_ : float
        1-norm condition number of ``covariance_`` (``nan`` with ``solver="pinv"``).
    n_features_in_ : int
    """

    _track_scatter = True

    def __init__(self, *, shrinkage: str | float | None = "ks", priors: Any = "uniform",
                 solver: str = "cholesky") -> None:
        self.shrinkage = shrinkage
        self.priors = priors
        self.solver = solver

    def _check_params(self) -> None:
        s, who = self.shrinkage, type(self).__name__  # GDA, or a subclass (KLDA) by its own name
        if isinstance(s, str):
            if s not in ("ks", "auto"):
                raise ValueError(f"{who} option 'shrinkage' must be 'ks', 'auto', a float in "
                                 f"[0, 1] or None, got {s!r}.")
        elif s is not None and (isinstance(s, bool) or not isinstance(s, Real) or not 0 <= s <= 1):
            raise ValueError(f"{who} option 'shrinkage' as a number must lie in [0, 1], got {s!r}.")
        if isinstance(self.priors, str) and self.priors not in ("empirical", "uniform"):
            raise ValueError(
                f"{who} option 'priors' must be 'empirical', 'uniform' or an array, got "
                f"{self.priors!r}."
            )
        if self.solver not in ("cholesky", "pinv"):
            raise ValueError(f"{who} option 'solver' must be 'cholesky' or 'pinv', got "
                             f"{self.solver!r}.")

    def _shrunk_covariance(self) -> tuple[np.ndarray, float]:
        W = self._scatter
        n = float(self.class_count_.sum())
        d = W.shape[0]
        eye = np.eye(d)
        if not np.trace(W) > 0:
            return eye, 0.0
        if self.shrinkage == "ks":
            tr_s = np.trace(W) / max(n - 1.0, 1.0)
            return (W + tr_s * eye) / d, float("nan")
        S = W / n
        if self.shrinkage is None:
            return S, 0.0
        mu = np.trace(S) / d
        alpha = self._ledoit_wolf(S, n) if self.shrinkage == "auto" else float(self.shrinkage)
        return (1.0 - alpha) * S + alpha * mu * eye, alpha

    def _ledoit_wolf(self, S: np.ndarray, n: float) -> float:
        """Ledoit–Wolf coefficient, as ``sklearn.covariance.ledoit_wolf_shrinkage(assume_centered=True)``."""
        d = S.shape[0]
        if d == 1:
            return 0.0
        mu = np.trace(S) / d
        delta_ = float(np.sum(S**2))
        beta = (self._fourth / n - delta_) / (d * n)
        delta = (delta_ - 2.0 * mu * np.trace(S) + d * mu**2) / d
        beta = min(beta, delta)
        return 0.0 if beta == 0 else float(beta / delta)

    def _priors(self) -> np.ndarray:
        count = self.class_count_
        if isinstance(self.priors, str):
            if self.priors == "empirical":
                return count / count.sum()
            return np.full(count.size, 1.0 / count.size)
        priors = np.asarray(self.priors, dtype=np.float64).ravel()
        if priors.size != count.size or not np.all(priors > 0):
            raise ValueError(
                f"GDA priors array has {priors.size} entries ({priors.tolist()[:5]}...) but "
                f"{count.size} classes are fitted; give one positive prior per class."
            )
        return priors / priors.sum()

    def _finalize(self) -> None:
        cov, self.shrinkage_ = self._shrunk_covariance()
        if self.solver == "pinv":
            precision = linalg.pinvh(cov)
            self.condition_number_ = float("nan")
        else:
            try:
                factor = linalg.cho_factor(cov, lower=True)
            except linalg.LinAlgError as err:
                raise ValueError(
                    "GDA covariance is singular (more dimensions than samples?); use a "
                    "shrinkage ('ks', 'auto' or a float) or solver='pinv'."
                ) from err
            precision = linalg.cho_solve(factor, np.eye(cov.shape[0]))
            precision = (precision + precision.T) / 2.0
            self.condition_number_ = condition_number(cov, factor)
        self.covariance_, self.precision_ = cov, precision
        self.priors_ = self._priors()
        self.coef_ = self.means_ @ precision
        self.intercept_ = np.log(self.priors_) - 0.5 * np.sum(self.coef_ * self.means_, axis=1)

    def streaming_lda_shrinkage(self) -> float:
        """The ``shrinkage_param`` of avalanche's ``StreamingLDA`` that gives our predictions.

        The two shrink differently: ours is ``(1−α)·S + α·μ·I`` with
        ``μ = tr(S)/D`` (scikit-learn's ``shrunk_covariance``), StreamingLDA's
        ``(1−s)·Σ + s·I`` (Hayes et al. 2020). With ``s = α·μ / (1 − α + α·μ)``
        its matrix is ours times ``1/(1 − α + α·μ)``; a positive scale of the
        covariance scales every score and leaves the argmax unchanged under
        uniform priors (StreamingLDA has none). On L2-normalised features μ is
        about 1/D, so the same number in both (s = α) shrinks far harder there.

        Returns
        -------
        float
            ``s`` for the fitted ``shrinkage_`` (requires a numeric shrinkage).
        """
        check_is_fitted(self, "covariance_")
        alpha = float(self.shrinkage_)
        if not np.isfinite(alpha):
            raise ValueError("streaming_lda_shrinkage needs shrinkage=float or 'auto', not 'ks'.")
        mu = float(np.trace(self.covariance_)) / self.covariance_.shape[0]  # trace is kept by shrinking
        return alpha * mu / (1.0 - alpha + alpha * mu)

    def _decision_function(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Log posterior up to a per-sample constant, ``X @ coef_ᵀ + intercept_``, shape (n, C)
        (or (n, len(columns)) for the classes ``classes_[columns]``)."""
        if columns is None:
            return X @ self.coef_.T + self.intercept_
        return X @ self.coef_[columns].T + self.intercept_[columns]
