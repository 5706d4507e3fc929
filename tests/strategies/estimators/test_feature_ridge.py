"""Random-feature ridge: the dual and primal forms are the same ridge head, solved in place,
with the condition number of the system, and memory refused before it is allocated."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from strategies.estimators import feature_ridge
from strategies.estimators.feature_ridge import (
    RandomFeatureRidge,
    cholesky_solve_in_place,
    gram_path_mse,
)
from strategies.estimators.ridge import IncrementalRidge, one_hot, ridge_path_mse


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:700] / 16.0, y[:700]


def _estimates_condition(estimate: float, A: np.ndarray) -> None:
    """LAPACK's ``?pocon`` estimate is a lower bound of the 1-norm condition number, in
    practice within a small factor of it."""
    exact = np.linalg.cond(A, 1)
    assert exact / 3 <= estimate <= exact * (1 + 1e-6)


def _tasks(model: RandomFeatureRidge, X: np.ndarray, y: np.ndarray) -> RandomFeatureRidge:
    for t in range(5):
        model.partial_fit(X[y // 2 == t], y[y // 2 == t])
    return model


@pytest.mark.parametrize("solver, m", [("dual", 300), ("primal", 300), ("auto", 300),
                                       ("auto", 800)])
def test_every_form_is_one_ridge_fit_on_all_data(digits, solver, m) -> None:
    X, y = digits
    model = _tasks(RandomFeatureRidge(n_components=m, alpha=2.0, solver=solver), X, y)
    H = np.maximum(X @ model.projection_.components_, 0.0)
    A = H.T @ H + 2.0 * np.eye(m)
    W = np.linalg.solve(A, H.T @ one_hot(y, np.arange(10)))
    np.testing.assert_allclose(model.class_scores(X), H @ W, rtol=1e-7, atol=1e-8)
    # auto: dual while the 700 samples fit under M = 1000, primal once they exceed M = 300
    expected = {"dual": "dual", "primal": "primal"}.get(solver, "dual" if m >= len(y) else "primal")
    assert model.form_ == expected
    system = A if model.form_ == "primal" else H @ H.T + 2.0 * np.eye(len(y))
    _estimates_condition(model.condition_number_, system)


def test_dual_keeps_no_m_by_m_matrix_and_switches_to_primal_exactly(digits) -> None:
    X, y = digits
    model = RandomFeatureRidge(n_components=400, alpha=0.5)
    model.partial_fit(X[:300], y[:300])
    assert model.form_ == "dual" and not hasattr(model, "gram_")
    assert model.kernel_.shape == (300, 300) and model.inputs_.shape == (300, 64)
    model.partial_fit(X[300:], y[300:])  # 700 > 400: G built from the stored inputs
    assert model.form_ == "primal" and not hasattr(model, "inputs_")
    ref = IncrementalRidge(alpha=0.5).fit(np.maximum(X @ model.projection_.components_, 0.0), y)
    np.testing.assert_allclose(np.triu(model.gram_), np.triu(ref.gram_), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-7, atol=1e-9)


def test_auto_lambda_is_ranpacs_choice_from_the_gram_path() -> None:
    rng = np.random.default_rng(0)
    Hf, Hv = rng.standard_normal((50, 200)), rng.standard_normal((20, 200))
    Yf, Yv = rng.standard_normal((50, 3)), rng.standard_normal((20, 3))
    grid = np.array([1e-3, 1e-1, 1.0, 10.0])
    np.testing.assert_allclose(gram_path_mse(Hf @ Hf.T, Hv @ Hf.T, Yf, Yv, grid),
                               ridge_path_mse(Hf, Yf, Hv, Yv, grid), rtol=1e-10)


def test_in_place_solve_keeps_g_and_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    H = rng.standard_normal((40, 30))
    G = np.triu(H.T @ H)  # only the upper triangle is the matrix; the lower is scratch
    Q = rng.standard_normal((30, 4))
    before = G.copy()
    B, cond = cholesky_solve_in_place(G, Q, 0.3)
    A = H.T @ H + 0.3 * np.eye(30)
    np.testing.assert_allclose(B, np.linalg.solve(A, Q), rtol=1e-10)
    _estimates_condition(cond, A)
    np.testing.assert_array_equal(np.triu(G), np.triu(before))


def test_statistics_round_trip_is_exact_in_both_forms(digits) -> None:
    X, y = digits
    for m in (400, 100):
        model = RandomFeatureRidge(n_components=m).fit(X[:150], y[:150])
        clone = RandomFeatureRidge(n_components=m).set_statistics(model.get_statistics())
        model.partial_fit(X[150:300], y[150:300])
        clone.partial_fit(X[150:300], y[150:300])
        np.testing.assert_array_equal(clone.class_scores(X), model.class_scores(X))
        assert clone.statistics_nbytes() == model.statistics_nbytes()


def test_memory_is_refused_before_allocating_and_names_the_options(digits, monkeypatch) -> None:
    X, y = digits
    monkeypatch.setattr(feature_ridge, "available_memory_bytes", lambda: 10**6)
    with pytest.raises(MemoryError, match=r"n_components=2000.*dtype='float64'.*float32"):
        RandomFeatureRidge(n_components=2000, alpha=1.0, solver="primal").fit(X[:20], y[:20])


@pytest.mark.parametrize("bad", [{"solver": "qr"}, {"n_components": 0}, {"alpha": -1.0},
                                 {"distribution": "cauchy"}])
def test_bad_options_are_named(digits, bad) -> None:
    X, y = digits
    with pytest.raises(ValueError, match=next(iter(bad))):
        RandomFeatureRidge(**bad).fit(X, y)


@pytest.mark.parametrize("solver", ["dual", "primal"])
def test_torch_device_path_equals_the_numpy_path(digits, solver) -> None:
    """The products and the primal solve on a torch device (here the CPU; a GPU in use)."""
    X, y = digits
    ref = _tasks(RandomFeatureRidge(n_components=300, solver=solver), X[:300], y[:300])
    dev = _tasks(RandomFeatureRidge(n_components=300, solver=solver, device="cpu"), X[:300], y[:300])
    assert dev.alpha_ == ref.alpha_
    np.testing.assert_allclose(dev.coef_, ref.coef_, rtol=1e-6, atol=1e-8)
    assert dev.condition_number_ == pytest.approx(ref.condition_number_, rel=1e-3)
