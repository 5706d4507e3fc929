"""NMC estimator: agreement with scikit-learn, exact incremental updates, API checks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestCentroid
from sklearn.utils.estimator_checks import parametrize_with_checks

from strategies import NMC


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, ...]:
    X, y = load_digits(return_X_y=True)
    return tuple(train_test_split(X, y, test_size=0.3, random_state=0, stratify=y))


@pytest.mark.filterwarnings("ignore:self.within_class_std_dev_")
def test_euclidean_unnormalised_equals_nearest_centroid(digits) -> None:
    Xtr, Xte, ytr, yte = digits
    ours = NMC(metric="euclidean", normalize=False).fit(Xtr, ytr)
    ref = NearestCentroid().fit(Xtr, ytr)
    np.testing.assert_allclose(ours.means_, ref.centroids_, rtol=1e-12)
    np.testing.assert_array_equal(ours.predict(Xte), ref.predict(Xte))
    assert ours.score(Xte, yte) > 0.85


def test_chunked_partial_fit_equals_fit_with_classes_arriving_late(digits) -> None:
    Xtr, _, ytr, _ = digits
    full = NMC().fit(Xtr, ytr)
    inc = NMC()
    # classes 0-4 first, then 5-9 together with more samples of the old classes
    first = ytr < 5
    inc.partial_fit(Xtr[first][:200], ytr[first][:200])
    inc.partial_fit(Xtr[first][200:], ytr[first][200:])
    inc.partial_fit(Xtr[~first], ytr[~first])
    np.testing.assert_array_equal(inc.classes_, full.classes_)
    np.testing.assert_array_equal(inc.class_count_, full.class_count_)
    np.testing.assert_allclose(inc.means_, full.means_, rtol=1e-10, atol=1e-12)


def test_normalize_averages_unit_vectors_and_cosine_scores_by_hand() -> None:
    X = np.array([[3.0, 4.0], [0.0, 2.0], [-1.0, 0.0], [-2.0, 0.0]])
    y = np.array([0, 0, 1, 1])
    model = NMC(metric="cosine", normalize=True, temperature=0.5).fit(X, y)
    np.testing.assert_allclose(model.means_, [[0.3, 0.9], [-1.0, 0.0]])
    x = np.array([[1.0, 1.0]])
    mu0 = np.array([0.3, 0.9]) / np.linalg.norm([0.3, 0.9])
    cos = np.array([x[0] @ mu0 / np.sqrt(2), -1.0 / np.sqrt(2)])
    np.testing.assert_allclose(model.class_scores(x)[0], cos - 1.0)
    expected = np.exp((cos - 1.0) / 0.5) / np.exp((cos - 1.0) / 0.5).sum()
    np.testing.assert_allclose(model.predict_proba(x)[0], expected)
    np.testing.assert_allclose(model.decision_function(x), [cos[1] - cos[0]])


def test_euclidean_scores_are_negative_distances() -> None:
    X = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 5.0]])
    model = NMC(metric="euclidean", normalize=False).fit(X, ["a", "a", "b"])
    np.testing.assert_allclose(model.class_scores([[1.0, 1.0]]), [[-1.0, -np.sqrt(17.0)]])
    assert model.predict([[1.0, 1.0]]).tolist() == ["a"]


def test_bad_input_is_rejected_with_clear_errors() -> None:
    X = np.random.default_rng(0).normal(size=(6, 3))
    y = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(NotFittedError):
        NMC().predict(X)
    bad = X.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        NMC().fit(bad, y)
    model = NMC().partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="3 features"):
        model.partial_fit(X[:, :2], y)
    with pytest.raises(ValueError, match=r"labels \[7\] are not in classes"):
        model.partial_fit(X[:1], [7])
    with pytest.raises(ValueError, match="metric"):
        NMC(metric="manhattan").fit(X, y)
    with pytest.raises(ValueError, match="temperature"):
        NMC(temperature=0.0).fit(X, y)


def test_state_roundtrip_restores_predictions(digits) -> None:
    Xtr, Xte, ytr, _ = digits
    model = NMC().fit(Xtr, ytr)
    clone = NMC().set_statistics(model.get_statistics())
    np.testing.assert_array_equal(clone.predict(Xte), model.predict(Xte))


@parametrize_with_checks([NMC(), NMC(metric="euclidean", normalize=False, temperature=2.0)])
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)
