"""Running per-class sufficient statistics shared by :class:`~strategies.estimators.nmc.NMC` and
:class:`~strategies.estimators.gda.GDA`.

A training-free classifier on frozen features only needs, per class ``c``,
the count ``n_c`` and the sum ``s_c = Σ_{i: y_i = c} x_i`` (hence the mean
``μ_c = s_c / n_c``), and — for a shared-covariance Gaussian model — the
pooled within-class scatter

    W = Σ_c Σ_{i: y_i = c} (x_i − μ_c)(x_i − μ_c)ᵀ            (D, D).

All three can be updated from a new chunk alone. For the scatter, Chan,
Golub & LeVeque ("Updating formulae and a pairwise algorithm for computing
sample variances", 1979; their pairwise update written per class and
summed) give, for
old statistics ``a`` and a chunk ``b`` with class counts ``n_a,c``, ``n_b,c``
and means ``μ_a,c``, ``m_b,c``::

    W = W_a + W_b + Σ_c  n_a,c · n_b,c / (n_a,c + n_b,c) · (m_b,c − μ_a,c)(m_b,c − μ_a,c)ᵀ

where ``W_b`` is the chunk's scatter around its own class means. Fitting in
any chunking therefore equals one fit on all data (up to float rounding), and
a chunk costs O(n_b·D²) however much data came before.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data


def l2_normalize(X: np.ndarray) -> np.ndarray:
    """Rows of ``X`` (n, D) scaled to unit L2 norm; zero rows stay zero (as
    ``sklearn.preprocessing.normalize`` does, without its per-call validation cost)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms == 0.0, 1.0, norms)

class IncrementalClassStats(ClassifierMixin, BaseEstimator):
    """Base class: ``fit`` / ``partial_fit`` that keep running class statistics.

    Subclasses set ``_track_scatter`` and implement :meth:`_finalize` (derive
    the public fitted attributes from the statistics) and
    :meth:`_decision_function` ((n, C) scores, higher is better).

    Fitted attributes
    -----------------
    classes_ : ndarray, shape (C,)
        Sorted labels seen so far.
    class_count_ : ndarray, shape (C,), float64
        Number of samples of each class.
    means_ : ndarray, shape (C, D), float64
        Class means (of the transformed samples, see :meth:`_transform`).
    n_features_in_ : int
    """

    _track_scatter: bool = False

    # -- statistics -----------------------------------------------------------
    def _transform(self, X: np.ndarray) -> np.ndarray:
        """Per-sample transform applied before statistics and scoring (identity)."""
        return X

    def _reset(self) -> None:
        for name in ("classes_", "class_count_", "means_", "n_features_in_", "_class_sum",
                     "_scatter", "_fourth", "_declared"):
            if hasattr(self, name):
                delattr(self, name)

    def fit(self, X: Any, y: Any) -> IncrementalClassStats:
        """Forget everything and fit on ``X`` (n, D), ``y`` (n,); returns self."""
        self._reset()
        return self.partial_fit(X, y)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> IncrementalClassStats:
        """Update the statistics with one more chunk; returns self.

        Parameters
        ----------
        X : array-like, shape (n, D)
            Finite features; D must equal the D of earlier calls.
        y : array-like, shape (n,)
            Labels. Classes never seen before may appear in any call.
        classes : array-like or None
            Allowed labels. When given, a label of ``y`` outside it raises
            ``ValueError``; later calls that omit ``classes`` keep checking
            against it.

        Raises
        ------
        ValueError
            NaN/inf in ``X``, a changed number of features, or labels outside
            ``classes``.
        """
        self._check_params()
        first = not hasattr(self, "classes_")
        X, y = validate_data(self, X, y, reset=first, dtype=np.float64)
        with warnings.catch_warnings():  # few samples of many classes is normal in CL tasks
            warnings.filterwarnings("ignore", message="The number of unique classes")
            check_classification_targets(y)
        if classes is not None:
            self._declared = np.unique(np.asarray(classes))
        declared = getattr(self, "_declared", None)
        if declared is not None:
            outside = np.setdiff1d(np.unique(y), declared)
            if outside.size:
                raise ValueError(
                    f"labels {outside[:5].tolist()} are not in classes={declared.tolist()[:10]}; "
                    "pass the full set of classes, or classes=None to accept new ones."
                )
        X = self._transform(X)
        labels, inverse = np.unique(y, return_inverse=True)
        n, d = X.shape
        onehot = sparse.csr_matrix(
            (np.ones(n), (inverse, np.arange(n))), shape=(labels.size, n)
        )
        count_b = np.asarray(onehot.sum(axis=1)).ravel()
        sum_b = np.asarray(onehot @ X)
        if first:
            self.classes_ = labels[:0]
            self.class_count_ = np.zeros(0)
            self._class_sum = np.zeros((0, d))
            if self._track_scatter:
                self._scatter = np.zeros((d, d))
                self._fourth = 0.0
        self._merge_classes(labels)
        pos = np.searchsorted(self.classes_, labels)
        if self._track_scatter:
            mean_b = sum_b / count_b[:, None]
            centred = X - mean_b[inverse]
            self._scatter += centred.T @ centred
            self._fourth += float(np.sum(np.einsum("ij,ij->i", centred, centred) ** 2))
            n_a = self.class_count_[pos]
            old = n_a > 0
            if old.any():
                diff = mean_b[old] - self._class_sum[pos[old]] / n_a[old, None]
                weight = n_a[old] * count_b[old] / (n_a[old] + count_b[old])
                self._scatter += (diff * weight[:, None]).T @ diff
        self.class_count_[pos] += count_b
        self._class_sum[pos] += sum_b
        self.means_ = self._class_sum / self.class_count_[:, None]
        self._finalize()
        return self

    def _merge_classes(self, labels: np.ndarray) -> None:
        """Insert unseen ``labels`` into ``classes_`` (kept sorted) and grow the statistics."""
        new = np.setdiff1d(labels, self.classes_)
        if new.size == 0:
            return
        classes = np.union1d(self.classes_, new)
        old_pos = np.searchsorted(classes, self.classes_)
        count = np.zeros(classes.size)
        count[old_pos] = self.class_count_
        sums = np.zeros((classes.size, self._class_sum.shape[1]))
        sums[old_pos] = self._class_sum
        self.classes_, self.class_count_, self._class_sum = classes, count, sums

    def _check_params(self) -> None:
        """Raise ``ValueError`` for invalid hyper-parameters (subclass hook)."""

    def _finalize(self) -> None:
        """Derive the public fitted attributes after an update (subclass hook)."""

    # -- prediction -----------------------------------------------------------
    def _decision_function(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Scores (n, C) of validated, transformed ``X`` (only ``classes_[columns]`` when
        given); higher means more likely."""
        raise NotImplementedError

    def _scores(self, X: Any) -> np.ndarray:
        return self.class_scores(X)

    def class_scores(self, X: Any, columns: np.ndarray | None = None) -> np.ndarray:
        """Scores of every class, shape (n, C) also when C = 2 (higher is more likely).

        ``columns`` (indices into ``classes_``) restricts the scores to those classes,
        shape (n, len(columns)), without computing the others.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self._decision_function(self._transform(X), columns)

    def trusted_class_scores(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """:meth:`class_scores` for trusted finite float arrays (n, D): checks only the shape.

        The runner's hot path (one call per evaluation batch) uses it; the sklearn
        input validation of :meth:`class_scores` costs ~3x the scoring itself there.
        """
        check_is_fitted(self)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has shape {X.shape}; expected (n, {self.n_features_in_}).")
        return self._decision_function(self._transform(np.asarray(X, dtype=np.float64)), columns)

    def get_statistics(self) -> dict[str, Any]:
        """The running statistics (copies), enough to rebuild the fitted model."""
        check_is_fitted(self)
        stats: dict[str, Any] = {"classes": self.classes_.copy(),
                                 "class_count": self.class_count_.copy(),
                                 "class_sum": self._class_sum.copy()}
        if self._track_scatter:
            stats.update(scatter=self._scatter.copy(), fourth=float(self._fourth))
        return stats

    def set_statistics(self, stats: dict[str, Any]) -> IncrementalClassStats:
        """Restore :meth:`get_statistics`' output and refit the derived attributes; returns self."""
        self._check_params()
        self._reset()
        self.classes_ = np.asarray(stats["classes"])
        self.class_count_ = np.asarray(stats["class_count"], dtype=np.float64)
        self._class_sum = np.asarray(stats["class_sum"], dtype=np.float64)
        self.n_features_in_ = int(self._class_sum.shape[1])
        if self._track_scatter:
            self._scatter = np.asarray(stats["scatter"], dtype=np.float64)
            self._fourth = float(stats["fourth"])
        self.means_ = self._class_sum / self.class_count_[:, None]
        self._finalize()
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores, shape (n, C); for two classes, score(classes_[1]) − score(classes_[0]), shape (n,)."""
        scores = self._scores(X)
        if scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict(self, X: Any) -> np.ndarray:
        """Label of the highest-scoring class, shape (n,)."""
        scores = self._scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of the scores divided by :meth:`_temperature`, shape (n, C)."""
        scores = self._scores(X) / self._temperature()
        scores -= scores.max(axis=1, keepdims=True)
        proba = np.exp(scores)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba`, shape (n, C)."""
        scores = self._scores(X) / self._temperature()
        scores -= scores.max(axis=1, keepdims=True)
        return scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))

    def _temperature(self) -> float:
        return 1.0

