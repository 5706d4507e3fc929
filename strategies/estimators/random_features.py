"""Seeded random feature maps as scikit-learn transformers.

:class:`RandomReLUFeatures`
    ``h(x) = max(0, x·W)`` with a fixed random ``W`` (D, M): the random
    projection of RanPAC (McDonnell et al., "RanPAC: Random Projections and
    Pre-trained Models for Continual Learning", NeurIPS 2023, Sec. 4.2;
    reference ``RanPAC.py``, ``setup_RP``: ``W = torch.randn(D, M)``) and the
    feature expansion of primal RAIL (Xu et al., NeurIPS 2024; reference
    ``primal_RAIL.py``: ``nn.Linear(D, M, bias=False)`` + ReLU, whose default
    initialisation draws ``W ~ U(−1/√D, 1/√D)``).
:class:`RandomFourierFeatures`
    ``z(x) = √(2/M)·cos(x·W + b)``, ``W ~ N(0, 2γ)``, ``b ~ U(0, 2π)``: Rahimi &
    Recht, "Random Features for Large-Scale Kernel Machines", NeurIPS 2007,
    Eq. (2) for the Gaussian kernel ``exp(−γ‖x − x'‖²)``; exactly
    ``sklearn.kernel_approximation.RBFSampler`` (the map RanDumb uses) for the
    same draws.

Both draw their matrices in ``fit`` from ``random_state`` and look at the data
only for its width D (and, for ``gamma="scale"``, its variance).
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

_DTYPES = ("float32", "float64")


def _check_common(name: str, n_components: Any, dtype: Any) -> None:
    if isinstance(n_components, bool) or not isinstance(n_components, Integral) or n_components < 1:
        raise ValueError(f"{name} n_components must be a positive integer, got {n_components!r}.")
    if dtype not in _DTYPES:
        raise ValueError(f"{name} dtype must be 'float32' or 'float64', got {dtype!r}.")


class RandomReLUFeatures(TransformerMixin, BaseEstimator):
    """ReLU of a fixed random projection, ``max(0, X @ components_)``.

    Parameters
    ----------
    n_components : int
        Output width M (RanPAC: 10,000; RAIL: 15,000).
    distribution : {"normal", "uniform"}
        ``"normal"``: ``W_ij ~ N(0, 1)`` (RanPAC); ``"uniform"``:
        ``W_ij ~ U(−1/√D, 1/√D)`` (RAIL's ``nn.Linear`` default initialisation).
    random_state : int, RandomState or None
    dtype : {"float32", "float64"}
        Storage of ``components_`` (D·M numbers) and of the output.

    Attributes
    ----------
    components_ : ndarray, shape (D, M)
    n_features_in_ : int
    """

    def __init__(self, n_components: int = 10_000, *, distribution: str = "normal",
                 random_state: Any = 0, dtype: str = "float32") -> None:
        self.n_components = n_components
        self.distribution = distribution
        self.random_state = random_state
        self.dtype = dtype

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = [self.dtype]  # output dtype is ``dtype``
        return tags

    def fit(self, X: Any, y: Any = None) -> RandomReLUFeatures:
        """Draw ``components_`` for the width of ``X`` (n, D); returns self."""
        _check_common("RandomReLUFeatures", self.n_components, self.dtype)
        if self.distribution not in ("normal", "uniform"):
            raise ValueError("RandomReLUFeatures distribution must be 'normal' or 'uniform', "
                             f"got {self.distribution!r}.")
        X = validate_data(self, X)
        rng = check_random_state(self.random_state)
        shape = (X.shape[1], self.n_components)
        if self.distribution == "normal":
            W = rng.standard_normal(shape)
        else:
            bound = 1.0 / np.sqrt(X.shape[1])
            W = rng.uniform(-bound, bound, size=shape)
        self.components_ = W.astype(self.dtype)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``max(0, X @ components_)``, shape (n, M)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.project(X)

    def project(self, X: np.ndarray) -> np.ndarray:
        """:meth:`transform` of a trusted array (n, D), without validation."""
        return np.maximum(X.astype(self.components_.dtype, copy=False) @ self.components_, 0.0)


class RandomFourierFeatures(TransformerMixin, BaseEstimator):
    """Random Fourier features of the Gaussian kernel (Rahimi & Recht 2007).

    Parameters
    ----------
    n_components : int
        Output width M.
    gamma : float or "scale"
        Kernel ``exp(−γ‖x − x'‖²)``; ``"scale"`` is ``1 / (D · X.var())`` of the
        data given to ``fit`` (as ``RBFSampler(gamma="scale")``; 1 if that
        variance is 0).
    random_state : int, RandomState or None
    dtype : {"float32", "float64"}

    Attributes
    ----------
    gamma_ : float
    random_weights_ : ndarray, shape (D, M)
        ``√(2γ)·N(0, 1)`` draws.
    random_offset_ : ndarray, shape (M,)
        ``U(0, 2π)`` draws.
    n_features_in_ : int
    """

    def __init__(self, n_components: int = 5_000, *, gamma: float | str = "scale",
                 random_state: Any = 0, dtype: str = "float32") -> None:
        self.n_components = n_components
        self.gamma = gamma
        self.random_state = random_state
        self.dtype = dtype

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = [self.dtype]  # output dtype is ``dtype``
        return tags

    def fit(self, X: Any, y: Any = None) -> RandomFourierFeatures:
        """Draw the weights (the same draws as ``RBFSampler`` with this ``random_state``)."""
        _check_common("RandomFourierFeatures", self.n_components, self.dtype)
        g = self.gamma
        if not (g == "scale" or (isinstance(g, Real) and not isinstance(g, bool) and g > 0)):
            raise ValueError(f"RandomFourierFeatures gamma must be 'scale' or > 0, got {g!r}.")
        X = validate_data(self, X, dtype=np.float64)
        if g == "scale":
            var = float(X.var())
            self.gamma_ = 1.0 / (X.shape[1] * var) if var != 0 else 1.0
        else:
            self.gamma_ = float(g)
        rng = check_random_state(self.random_state)
        W = np.sqrt(2.0 * self.gamma_) * rng.normal(size=(X.shape[1], self.n_components))
        b = rng.uniform(0, 2 * np.pi, size=self.n_components)
        self.random_weights_, self.random_offset_ = W.astype(self.dtype), b.astype(self.dtype)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``√(2/M)·cos(X @ random_weights_ + random_offset_)``, shape (n, M)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.project(X)

    def project(self, X: np.ndarray) -> np.ndarray:
        """:meth:`transform` of a trusted array (n, D), without validation."""
        Z = X.astype(self.random_weights_.dtype, copy=False) @ self.random_weights_
        Z += self.random_offset_
        np.cos(Z, out=Z)
        Z *= np.sqrt(2.0 / self.n_components).astype(Z.dtype)
        return Z
