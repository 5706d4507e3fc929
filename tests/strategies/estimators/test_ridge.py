"""Incremental ridge: numpy.linalg.solve on the same Gram, chunking, the recursive solver,
RanPAC's λ selection against a direct per-λ solve, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.estimators.ridge import RANPAC_ALPHAS, IncrementalRidge, one_hot, ridge_path_mse


def _data(n: int = 120, d: int = 15, c: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    return rng.normal(size=(n, d)) + 1.5 * np.eye(c, d)[y], y


def test_head_is_numpy_solve_on_the_same_gram() -> None:
    X, y = _data()
    model = IncrementalRidge(alpha=0.7).fit(X, y)
    G, Q = X.T @ X, X.T @ one_hot(y, np.unique(y))
    np.testing.assert_allclose(model.gram_, G)
    np.testing.assert_allclose(model.coef_.T, np.linalg.solve(G + 0.7 * np.eye(15), Q), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("solver", ["cholesky", "recursive"])
def test_chunked_partial_fit_equals_one_fit(solver) -> None:
    X, y = _data(n=1300)
    full = IncrementalRidge(alpha=0.5, solver=solver).fit(X, y)
    inc = IncrementalRidge(alpha=0.5, solver=solver)
    order = np.argsort(y, kind="stable")  # classes arrive late, chunks span >512 rows
    for idx in np.array_split(order, 3):
        inc.partial_fit(X[idx], y[idx])
    np.testing.assert_array_equal(inc.classes_, full.classes_)
    np.testing.assert_allclose(inc.coef_, full.coef_, rtol=1e-8, atol=1e-10)
    ref = IncrementalRidge(alpha=0.5, solver="cholesky").fit(X, y)
    np.testing.assert_allclose(inc.coef_, ref.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("n", [30, 200])  # fewer and more rows than columns (SVD / eigh paths)
def test_auto_alpha_is_the_direct_per_lambda_choice(n: int) -> None:
    X, y = _data(n=n, d=40)
    model = IncrementalRidge(alpha="auto", shuffle=False).fit(X, y)
    k = int(n * 0.8)
    Y = one_hot(y, np.unique(y))
    G, Q = X[:k].T @ X[:k], X[:k].T @ Y[:k]
    losses = [np.mean((X[k:] @ np.linalg.solve(G + a * np.eye(40), Q) - Y[k:]) ** 2) for a in RANPAC_ALPHAS]
    np.testing.assert_allclose(ridge_path_mse(X[:k], Y[:k], X[k:], Y[k:], np.array(RANPAC_ALPHAS)),
                               losses, rtol=1e-6)
    assert model.alpha_ == RANPAC_ALPHAS[int(np.argmin(losses))]
    np.testing.assert_allclose(model.coef_.T, np.linalg.solve(X.T @ X + model.alpha_ * np.eye(40), X.T @ Y),
                               rtol=1e-8, atol=1e-10)


def test_state_round_trip_and_bad_input() -> None:
    X, y = _data()
    model = IncrementalRidge(alpha=1.0).fit(X[:60], y[:60])
    clone = IncrementalRidge(alpha=1.0).set_statistics(model.get_statistics())
    model.partial_fit(X[60:], y[60:])
    clone.partial_fit(X[60:], y[60:])
    np.testing.assert_allclose(clone.coef_, model.coef_)
    with pytest.raises(ValueError, match="fixed alpha"):
        IncrementalRidge(alpha="auto", solver="recursive").fit(X, y)
    with pytest.raises(ValueError, match="alpha must be"):
        IncrementalRidge(alpha=0.0).fit(X, y)
    with pytest.raises(ValueError, match="15 features"):
        model.partial_fit(X[:, :3], y)
    with pytest.raises(ValueError, match=r"labels \[9\] are not in classes"):
        IncrementalRidge(alpha=1.0).partial_fit(X[:4], [0, 1, 2, 9], classes=[0, 1, 2, 3])
