"""Nearest class mean as an incremental scikit-learn estimator.

Two published rules are option settings (the default is neither):

* Janson et al., "A Simple Baseline that Questions the Use of Pretrained-Models
  in Continual Learning", NeurIPS-W 2022: Euclidean distance to the means of
  L2-normalised samples, ``NMC(metric="euclidean", normalize=True)``;
* SimpleCIL (Zhou et al., "Revisiting Class-Incremental Learning with
  Pre-Trained Models", 2023; PILOT): cosine similarity to the means of the raw
  features, ``NMC(metric="cosine", normalize=False)``.

The running per-class sums live in
:class:`~strategies.estimators.class_stats.IncrementalClassStats`, so
``partial_fit`` on a new task never revisits old data and any chunking gives
the same model as one ``fit``.
"""

from __future__ import annotations

from numbers import Real

import numpy as np

from strategies.estimators.class_stats import IncrementalClassStats, l2_normalize


class NMC(IncrementalClassStats):
    """Nearest-class-mean classifier with exact incremental updates.

    Parameters
    ----------
    metric : {"cosine", "euclidean"}
        Distance between a sample and a class mean: cosine distance
        ``1 − cos(x, μ_c)`` or Euclidean ``‖x − μ_c‖``.
    normalize : bool
        L2-normalise every sample before averaging and scoring (with
        ``metric="euclidean"``: Janson et al.'s rule). With
        ``metric="euclidean", normalize=False`` the predictions are those of
        ``sklearn.neighbors.NearestCentroid``.
    temperature : float
        ``predict_proba`` is ``softmax(−distance / temperature)``.

    Attributes
    ----------
    classes_ : ndarray, shape (C,)
    class_count_ : ndarray, shape (C,)
    means_ : ndarray, shape (C, D)
        Mean of the (normalised, if ``normalize``) samples of each class.
    n_features_in_ : int
    """

    def __init__(self, *, metric: str = "cosine", normalize: bool = True,
                 temperature: float = 1.0) -> None:
        self.metric = metric
        self.normalize = normalize
        self.temperature = temperature

    def _check_params(self) -> None:
        if self.metric not in ("cosine", "euclidean"):
            raise ValueError(f"NMC metric must be 'cosine' or 'euclidean', got {self.metric!r}.")
        if not isinstance(self.temperature, Real) or not self.temperature > 0:
            raise ValueError(f"NMC temperature must be a positive number, got {self.temperature!r}.")

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return l2_normalize(X) if self.normalize else X

    def _temperature(self) -> float:
        return float(self.temperature)

    def _finalize(self) -> None:
        self._unit_means = l2_normalize(self.means_) if self.metric == "cosine" else None

    def _decision_function(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Negative distances to the class means, shape (n, C) (or (n, len(columns)))."""
        if self.metric == "cosine":
            unit = self._unit_means if columns is None else self._unit_means[columns]
            return l2_normalize(X) @ unit.T - 1.0
        means = self.means_ if columns is None else self.means_[columns]
        sq = (X**2).sum(1)[:, None] - 2.0 * X @ means.T + (means**2).sum(1)[None, :]
        return -np.sqrt(np.maximum(sq, 0.0))
