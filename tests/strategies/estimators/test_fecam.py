"""FeCAM estimator: scipy's Mahalanobis on the same covariance, the reference's shrinkage and
normalisation, exact increments, the memory-bounded variants and the memory refusal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis

from strategies.estimators.fecam import FeCAM, correlation, shrink_covariance


def _data(seed: int = 0, c: int = 4, n: int = 30, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(c), n)
    A = rng.normal(size=(c, d, d))
    return np.stack([3 * np.eye(c, d)[k] + A[k] @ rng.normal(size=d) for k in y]), y


def test_distance_is_scipy_mahalanobis_on_the_shrunk_normalised_covariance() -> None:
    X, y = _data()
    model = FeCAM(alpha1=1.0, alpha2=0.5).fit(X, y)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    scores = model.class_scores(X[:9])
    for c in range(4):
        cov = np.cov(Xn[y == c].T)
        cov = cov + np.mean(np.diag(cov)) * np.eye(6) + 0.5 * cov[~np.eye(6, dtype=bool)].mean() * (1 - np.eye(6))
        sd = np.sqrt(np.diag(cov))
        VI = np.linalg.inv(cov / np.outer(sd, sd))
        mu = Xn[y == c].mean(0)
        expected = [mahalanobis(x, mu, VI) ** 2 for x in Xn[:9]]
        np.testing.assert_allclose(-scores[:, c], expected, rtol=1e-9)


def test_reference_shrinkage_masks_exact_zeros() -> None:
    cov = np.array([[2.0, 0.0, 1.0], [0.0, 1.0, 3.0], [1.0, 3.0, 3.0]])
    out = shrink_covariance(cov, 1.0, 1.0)  # off-diagonal mean over non-zero entries: 2
    np.testing.assert_allclose(out, cov + 2.0 * np.eye(3) + 2.0 * (1 - np.eye(3)))
    np.testing.assert_allclose(np.diag(correlation(out)), 1.0)


@pytest.mark.parametrize("covariance", ["per_class", "shared", "lowrank"])
def test_chunks_that_split_classes_equal_one_fit(covariance) -> None:
    X, y = _data(n=40)
    full = FeCAM(covariance=covariance, rank=6).fit(X, y)
    inc = FeCAM(covariance=covariance, rank=6)
    for idx in np.array_split(np.random.default_rng(1).permutation(len(y)), 5):
        inc.partial_fit(X[idx], y[idx])
    np.testing.assert_allclose(inc.class_scores(X), full.class_scores(X), rtol=1e-7, atol=1e-9)


def test_lowrank_equals_per_class_when_the_rank_covers_the_scatter() -> None:
    X, y = _data(n=5, d=8)  # class scatter rank 4 <= rank
    per_class = FeCAM().fit(X, y).class_scores(X)
    np.testing.assert_allclose(FeCAM(covariance="lowrank", rank=4).fit(X, y).class_scores(X), per_class,
                               rtol=1e-8)
    truncated = FeCAM(covariance="lowrank", rank=1).fit(X, y).class_scores(X)
    assert not np.allclose(truncated, per_class)


def test_refuses_before_allocating_and_names_the_options() -> None:
    X, y = _data()
    model = FeCAM(memory_limit_gb=1e-6)
    with pytest.raises(ValueError, match=r"needs .* GB for 4 classes in 6 dimensions.*covariance='shared'.*"
                                         r"covariance='lowrank'"):
        model.partial_fit(X, y)
    assert not hasattr(model, "classes_")
    need = FeCAM().memory_needed(11_000, 768)
    assert need["per_class"] / 1e9 > 26 > need["lowrank"] / 1e9 and need["shared"] < 2e8
    assert FeCAM(covariance="shared", memory_limit_gb=1e-6).fit(X, y).score(X, y) > 0.5


def test_tukey_transform_and_bad_input() -> None:
    X, y = _data()
    P = np.abs(X)
    model = FeCAM(tukey_beta=0.5, normalize=False).fit(P, y)
    np.testing.assert_allclose(model.means_[0], np.sqrt(P[y == 0]).mean(0))
    with pytest.raises(ValueError, match="non-negative features"):
        FeCAM(tukey_beta=0.5).fit(X, y)
    with pytest.raises(ValueError, match="alpha2=0 only"):
        FeCAM(covariance="lowrank", alpha2=1.0).fit(P, y)
    with pytest.raises(ValueError, match="covariance must be"):
        FeCAM(covariance="full").fit(P, y)
