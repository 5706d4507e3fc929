"""Random feature maps: RBFSampler's exact draws, the ReLU projection's formula, seeding, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.kernel_approximation import RBFSampler

from strategies.estimators.random_features import RandomFourierFeatures, RandomReLUFeatures


def _X(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(30, 7))


@pytest.mark.parametrize("gamma", ["scale", 0.3])
def test_fourier_features_equal_sklearn_rbf_sampler(gamma) -> None:
    X = _X()
    ref = RBFSampler(gamma=gamma, n_components=50, random_state=3).fit(X)
    ours = RandomFourierFeatures(50, gamma=gamma, random_state=3, dtype="float64").fit(X)
    np.testing.assert_array_equal(ours.transform(X), ref.transform(X))


def test_fourier_features_approximate_the_gaussian_kernel() -> None:
    X = _X() / 3
    Z = RandomFourierFeatures(20_000, gamma=0.5, random_state=0, dtype="float64").fit_transform(X)
    K = np.exp(-0.5 * ((X[:, None] - X[None]) ** 2).sum(-1))
    assert np.abs(Z @ Z.T - K).max() < 0.05


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_relu_features_are_relu_of_a_seeded_projection(distribution) -> None:
    X = _X()
    a = RandomReLUFeatures(40, distribution=distribution, random_state=1, dtype="float64").fit(X)
    b = RandomReLUFeatures(40, distribution=distribution, random_state=1, dtype="float64").fit(_X(5))
    np.testing.assert_array_equal(a.components_, b.components_)  # data only sets the width
    np.testing.assert_allclose(a.transform(X), np.maximum(X @ a.components_, 0.0))
    if distribution == "uniform":  # nn.Linear's default initialisation bound, as RAIL's layer
        assert np.abs(a.components_).max() <= 1 / np.sqrt(7)
    c = RandomReLUFeatures(40, distribution=distribution, random_state=2).fit(X)
    assert not np.allclose(c.components_, a.components_)
    assert c.transform(X).dtype == np.float32


def test_bad_parameters_name_the_fix() -> None:
    with pytest.raises(ValueError, match="n_components"):
        RandomReLUFeatures(0).fit(_X())
    with pytest.raises(ValueError, match="distribution"):
        RandomReLUFeatures(5, distribution="cauchy").fit(_X())
    with pytest.raises(ValueError, match="gamma"):
        RandomFourierFeatures(5, gamma=-1.0).fit(_X())
    with pytest.raises(ValueError, match="dtype"):
        RandomFourierFeatures(5, dtype="float16").fit(_X())
