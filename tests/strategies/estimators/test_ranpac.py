"""RanPAC estimator: head = solve(G + λI, Q) on the ReLU projection, exact increments, float32 G."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from strategies.estimators.ranpac import RanPAC
from strategies.estimators.ridge import one_hot


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def test_head_is_ridge_on_relu_random_projection(digits) -> None:
    X, y = digits
    model = RanPAC(n_components=300, alpha=2.0).fit(X, y)
    H = np.maximum(X @ model.projection_.components_, 0.0)
    W = np.linalg.solve(H.T @ H + 2.0 * np.eye(300), H.T @ one_hot(y, np.arange(10)))
    np.testing.assert_allclose(model.class_scores(X), H @ W, rtol=1e-7, atol=1e-9)


def test_task_by_task_equals_one_fit_and_learns_digits(digits) -> None:
    X, y = digits
    inc = RanPAC(n_components=500)
    for t in range(5):
        inc.partial_fit(X[y // 2 == t], y[y // 2 == t])
    assert 1e-8 <= inc.alpha_ <= 1e8
    full = RanPAC(n_components=500, alpha=inc.alpha_).fit(X, y)  # λ of the last task
    np.testing.assert_allclose(inc.class_scores(X), full.class_scores(X), rtol=1e-6, atol=1e-8)
    assert inc.score(X, y) > 0.97


def test_float32_gram_halves_memory_and_keeps_predictions(digits) -> None:
    X, y = digits
    f64 = RanPAC(n_components=400, alpha=1.0, solver="primal").fit(X, y)
    f32 = RanPAC(n_components=400, alpha=1.0, dtype="float32", solver="primal").fit(X, y)
    assert f32.ridge_.gram_.nbytes * 2 == f64.ridge_.gram_.nbytes
    assert np.mean(f32.predict(X) == f64.predict(X)) > 0.99


def test_statistics_round_trip(digits) -> None:
    X, y = digits
    model = RanPAC(n_components=200).fit(X[:900], y[:900])
    clone = RanPAC(n_components=200).set_statistics(model.get_statistics())
    np.testing.assert_array_equal(clone.class_scores(X), model.class_scores(X))
