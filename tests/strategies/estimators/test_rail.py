"""RAIL: dual form equals scikit-learn's KernelRidge, primal recursive equals one ridge fit,
and the zero-shot fusion routes by the zero-shot prediction."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.kernel_ridge import KernelRidge

from strategies.estimators.rail import RAIL, rail_fusion
from strategies.estimators.ridge import one_hot


def _digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


def test_dual_form_is_kernel_ridge_refitted_on_all_features() -> None:
    X, y = _digits()
    model = RAIL(form="dual")
    for t in range(5):
        model.partial_fit(X[y // 2 == t], y[y // 2 == t])
    ref = KernelRidge(alpha=0.001, kernel="rbf", gamma=0.1).fit(X, one_hot(y, np.arange(10)))
    np.testing.assert_allclose(model.class_scores(X), ref.predict(X), rtol=1e-6, atol=1e-8)


def test_primal_recursive_equals_one_ridge_fit_on_relu_features() -> None:
    X, y = _digits()
    model = RAIL(n_components=400)
    for t in range(5):
        model.partial_fit(X[y // 2 == t], y[y // 2 == t])
    H = np.maximum(X @ model.projection_.components_, 0.0)
    W = np.linalg.solve(H.T @ H + 0.1 * np.eye(400), H.T @ one_hot(y, np.arange(10)))
    np.testing.assert_allclose(model.class_scores(X), H @ W, rtol=1e-6, atol=1e-8)
    assert model.score(X, y) > 0.95


def test_fusion_keeps_zero_shot_for_unlearned_predictions() -> None:
    zs = torch.tensor([[5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    reg = torch.tensor([[0.2, 0.9, -7.0], [0.1, 0.8, -7.0]])
    learned = torch.tensor([True, True, False])
    out = rail_fusion(zs, reg, learned, weight=0.8)
    p = torch.softmax(zs, -1)
    torch.testing.assert_close(out[0], 0.2 * p[0] + 0.8 * torch.tensor([0.2, 0.9, 0.0]))
    torch.testing.assert_close(out[1], p[1])  # zero-shot picked an unlearned class: untouched
    assert out.argmax(1).tolist() == [1, 2]


def test_every_form_reports_the_bytes_of_its_state() -> None:
    """``memory_bytes`` of the strategy: the dual (kernel) form counts its stored features and
    coefficients, the primal forms their own state, without copying it."""
    X, y = _digits()
    for model in (RAIL(form="dual"), RAIL(n_components=200),
                  RAIL(n_components=200, solver="recursive")):
        model.fit(X[:200], y[:200])
        stats = model.get_statistics()
        expected = sum(v.nbytes for v in stats.values() if isinstance(v, np.ndarray))
        assert model.statistics_nbytes() == expected > 0
