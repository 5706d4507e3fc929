"""KLDA: GDA on random Fourier features, exactly incremental."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from strategies import GDA
from strategies.estimators.klda import KLDA
from strategies.estimators.random_features import RandomFourierFeatures


def test_is_gda_on_the_random_features_and_incremental_equals_one_fit() -> None:
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    inc = KLDA(n_components=300, gamma=0.02)
    for t in range(5):
        inc.partial_fit(X[y // 2 == t], y[y // 2 == t])
    full = KLDA(n_components=300, gamma=0.02).fit(X, y)
    np.testing.assert_allclose(inc.class_scores(X), full.class_scores(X), rtol=1e-6, atol=1e-6)
    Z = RandomFourierFeatures(300, gamma=0.02, random_state=0, dtype="float64").fit_transform(X)
    np.testing.assert_allclose(full.class_scores(X), GDA(priors="empirical").fit(Z, y).class_scores(Z), rtol=1e-9, atol=1e-9)
    assert inc.score(X, y) > 0.95


def test_scale_gamma_comes_from_the_first_chunk_and_state_round_trips() -> None:
    X, y = load_digits(return_X_y=True)
    model = KLDA(n_components=100).partial_fit(X[:300], y[:300])
    assert model.features_.gamma_ == 1.0 / (64 * X[:300].var())
    clone = KLDA(n_components=100).set_statistics(model.get_statistics())
    assert clone.n_features_in_ == 64
    np.testing.assert_array_equal(clone.class_scores(X), model.class_scores(X))
