"""Prediction API shared by the analytic classifiers that are not class-statistics models.

:class:`IncrementalClassifier` gives ``fit`` (reset + ``partial_fit``) and the
scikit-learn prediction methods on top of one private ``_decision_function``,
with the same hot-path entry point (:meth:`trusted_class_scores`) and state
round trip (``get_statistics`` / ``set_statistics``) as
:class:`strategies.estimators.class_stats.IncrementalClassStats`, so that
:class:`strategies.heads.base.TrainingFreeStrategy` drives either.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class IncrementalClassifier(ClassifierMixin, BaseEstimator):
    """Base class: subclasses implement ``partial_fit``, ``_reset``, ``_check_params``,
    ``_decision_function(X, columns)``, ``get_statistics`` and ``set_statistics``.

    ``classes_`` (sorted labels seen so far, shape (C,)) and ``n_features_in_``
    are set by ``partial_fit``.
    """

    def _reset(self) -> None:
        """Forget the fitted state (subclass hook)."""
        raise NotImplementedError

    def _check_params(self) -> None:
        """Raise ``ValueError`` for invalid hyper-parameters (subclass hook)."""

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> IncrementalClassifier:
        raise NotImplementedError

    def _decision_function(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Scores (n, C) of validated ``X`` (n, D) (only ``classes_[columns]`` when given)."""
        raise NotImplementedError

    def fit(self, X: Any, y: Any) -> IncrementalClassifier:
        """Forget everything and fit on ``X`` (n, D), ``y`` (n,); returns self."""
        self._reset()
        return self.partial_fit(X, y)

    def class_scores(self, X: Any, columns: np.ndarray | None = None) -> np.ndarray:
        """Scores of every class, shape (n, C) also when C = 2 (higher is more likely);
        ``columns`` (indices into ``classes_``) restricts them to those classes."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self._decision_function(X, columns)

    def trusted_class_scores(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """:meth:`class_scores` for trusted finite float arrays (n, D): checks only the shape."""
        check_is_fitted(self)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has shape {X.shape}; expected (n, {self.n_features_in_}).")
        return self._decision_function(np.asarray(X, dtype=np.float64), columns)

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores, shape (n, C); for two classes score(classes_[1]) − score(classes_[0]), (n,)."""
        scores = self.class_scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X: Any) -> np.ndarray:
        """Label of the highest-scoring class, shape (n,)."""
        scores = self.class_scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of the class scores, shape (n, C)."""
        scores = self.class_scores(X)
        scores = scores - scores.max(axis=1, keepdims=True)
        proba = np.exp(scores)
        return proba / proba.sum(axis=1, keepdims=True)

    def get_statistics(self) -> dict[str, Any]:
        """The fitted state (copies of arrays and numbers), enough to rebuild the model."""
        raise NotImplementedError

    def set_statistics(self, stats: dict[str, Any]) -> IncrementalClassifier:
        """Restore :meth:`get_statistics`' output; returns self."""
        raise NotImplementedError


def grow_columns(classes: np.ndarray, matrix: np.ndarray | None, labels: np.ndarray,
                 n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Insert unseen ``labels`` into sorted ``classes`` and zero columns into ``matrix``.

    Returns the new sorted classes (C',) and the matrix (n_rows, C') whose old
    columns moved to their new positions (``matrix=None``: all zeros).
    """
    merged = np.union1d(classes, labels)
    grown = np.zeros((n_rows, merged.size), dtype=np.float64 if matrix is None else matrix.dtype)
    if matrix is not None and classes.size:
        grown[:, np.searchsorted(merged, classes)] = matrix
    return merged, grown
