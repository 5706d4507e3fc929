"""GDA estimator: the paper's KS estimator, agreement with scikit-learn LDA, exact
incremental updates, scikit-learn API checks and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import ledoit_wolf
from sklearn.datasets import load_digits
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.utils.estimator_checks import parametrize_with_checks

from strategies import GDA


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, ...]:
    X, y = load_digits(return_X_y=True)
    return tuple(train_test_split(X, y, test_size=0.3, random_state=0, stratify=y))


def _small(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.array([0] * 5 + [1] * 6 + [2] * 4)
    X = rng.normal(size=(15, 4)) + 2.0 * y[:, None] * np.array([1.0, -1.0, 0.5, 0.0])
    return X, y


def test_ks_estimator_matches_the_paper_formula() -> None:
    """Wang et al. (ICLR 2024), the KS estimator as their main_few_shots.py computes it:
    precision = D · pinv((N − 1)·S + tr(S)·I), S = cov of within-class-centred
    features (N − 1 normalised), uniform priors."""
    X, y = _small()
    n, d = X.shape
    mus = np.stack([X[y == c].mean(0) for c in range(3)])
    centred = X - mus[y]
    S = np.cov(centred.T)  # rows are variables, ddof=1: torch's ``center_vecs.T.cov()``
    precision = d * np.linalg.pinv((n - 1) * S + np.trace(S) * np.eye(d))
    coef = mus @ precision
    intercept = np.log(np.full(3, 1 / 3)) - 0.5 * np.einsum("cd,de,ce->c", mus, precision, mus)
    for solver in ("cholesky", "pinv"):
        model = GDA(shrinkage="ks", priors="uniform", solver=solver).fit(X, y)
        np.testing.assert_allclose(model.precision_, precision, rtol=1e-9)
        np.testing.assert_allclose(model.coef_, coef, rtol=1e-9)
        np.testing.assert_allclose(model.intercept_, intercept, rtol=1e-9)
        np.testing.assert_allclose(model.class_scores(X), X @ coef.T + intercept, rtol=1e-9)


@pytest.mark.parametrize("alpha", [0.05, 0.3, 0.9])
def test_float_shrinkage_agrees_with_sklearn_lda_lsqr(digits, alpha: float) -> None:
    Xtr, Xte, ytr, yte = digits
    ours = GDA(shrinkage=alpha, priors="empirical").fit(Xtr, ytr)
    ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=alpha).fit(Xtr, ytr)
    assert np.mean(ours.predict(Xte) == ref.predict(Xte)) >= 0.999
    np.testing.assert_allclose(ours.covariance_, ref.covariance_, rtol=1e-9, atol=1e-12)
    # same linear head up to a class-independent offset (sklearn may centre it differently)
    dcoef = ours.coef_ - ref.coef_
    np.testing.assert_allclose(dcoef, np.broadcast_to(dcoef[:1], dcoef.shape), atol=1e-8)
    dint = ours.intercept_ - ref.intercept_
    np.testing.assert_allclose(dint, np.full_like(dint, dint[0]), atol=1e-8)
    assert ours.score(Xte, yte) > 0.9


def test_auto_shrinkage_is_ledoit_wolf_of_the_within_class_centred_data(digits) -> None:
    Xtr, Xte, ytr, _ = digits
    ours = GDA(shrinkage="auto", priors="empirical").fit(Xtr, ytr)
    centred = Xtr - ours.means_[np.searchsorted(ours.classes_, ytr)]
    cov, coefficient = ledoit_wolf(centred, assume_centered=True)
    np.testing.assert_allclose(ours.covariance_, cov, rtol=1e-8, atol=1e-12)
    assert ours.shrinkage_ == pytest.approx(coefficient, rel=1e-9)
    # scikit-learn's LDA standardises and shrinks per class: close, not identical
    ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(Xtr, ytr)
    assert np.mean(ours.predict(Xte) == ref.predict(Xte)) >= 0.97


@pytest.mark.parametrize("shrinkage", ["ks", 0.2, None])
def test_chunked_partial_fit_equals_one_fit(digits, shrinkage) -> None:
    Xtr, _, ytr, _ = digits
    full = GDA(shrinkage=shrinkage, solver="pinv").fit(Xtr, ytr)
    inc = GDA(shrinkage=shrinkage, solver="pinv")
    order = np.argsort(ytr % 4, kind="stable")  # classes arrive late and span chunks
    for idx in np.array_split(order, 7):
        inc.partial_fit(Xtr[idx], ytr[idx])
    np.testing.assert_array_equal(inc.classes_, full.classes_)
    np.testing.assert_allclose(inc.means_, full.means_, rtol=1e-10, atol=1e-12)
    scale = np.abs(full.covariance_).max()
    assert np.abs(inc.covariance_ - full.covariance_).max() <= 1e-6 * scale
    np.testing.assert_array_equal(inc.predict(Xtr), full.predict(Xtr))


def test_single_sample_classes_stay_invertible() -> None:
    X, y = _small()
    X = np.vstack([X, [[9.0, 9.0, 9.0, 9.0]]])
    y = np.append(y, 3)  # class 3 has one sample
    for shrinkage in ("ks", "auto", 0.1):
        model = GDA(shrinkage=shrinkage).fit(X, y)
        assert np.all(np.isfinite(model.coef_)) and np.all(np.isfinite(model.intercept_))
        assert np.linalg.cond(model.covariance_) < 1e6
        assert model.predict([[9.0, 9.0, 9.0, 9.0]])[0] == 3
    # no within-class spread at all: identity covariance, i.e. nearest mean with priors
    lone = GDA().fit([[0.0, 0.0], [4.0, 0.0]], [0, 1])
    np.testing.assert_array_equal(lone.covariance_, np.eye(2))
    assert lone.predict([[3.0, 1.0]]).tolist() == [1]


def test_priors() -> None:
    X, y = _small()
    emp = GDA(priors="empirical").fit(X, y)
    np.testing.assert_allclose(emp.priors_, [5 / 15, 6 / 15, 4 / 15])
    given = GDA(priors=[2.0, 1.0, 1.0]).fit(X, y)
    np.testing.assert_allclose(given.priors_, [0.5, 0.25, 0.25])
    shift = given.intercept_ - GDA(priors="uniform").fit(X, y).intercept_
    np.testing.assert_allclose(shift, np.log([0.5, 0.25, 0.25]) - np.log(1 / 3))
    with pytest.raises(ValueError, match="one positive prior per class"):
        GDA(priors=[0.5, 0.5]).fit(X, y)


def test_bad_input_is_rejected_with_clear_errors() -> None:
    X, y = _small()
    with pytest.raises(NotFittedError):
        GDA().predict(X)
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        GDA().fit(bad, y)
    model = GDA().partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="4 features"):
        model.partial_fit(X[:, :3], y)
    with pytest.raises(ValueError, match=r"labels \[5\] are not in classes"):
        model.partial_fit(X[:2], [0, 5])
    with pytest.raises(ValueError, match="shrinkage"):
        GDA(shrinkage="oas").fit(X, y)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        GDA(shrinkage=1.5).fit(X, y)
    with pytest.raises(ValueError, match="solver"):
        GDA(solver="svd").fit(X, y)
    # more dimensions than samples and no shrinkage: singular, with the fix in the message
    wide = np.random.default_rng(1).normal(size=(4, 10))
    with pytest.raises(ValueError, match="use a shrinkage"):
        GDA(shrinkage=None).fit(wide, [0, 0, 1, 1])
    assert GDA(shrinkage=None, solver="pinv").fit(wide, [0, 0, 1, 1]).predict(wide).shape == (4,)


@parametrize_with_checks([
    GDA(),
    GDA(shrinkage="auto", priors="empirical"),
    GDA(shrinkage=0.5, solver="pinv"),
])
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)


def test_streaming_lda_shrinkage_maps_ours_onto_avalanche_streaming_lda():
    """On L2-normalised features the same number (s = α) is another model; the mapped s gives
    our predictions exactly when StreamingLDA holds our statistics, and within its streaming
    approximation when it learns them itself."""
    import warnings

    import torch
    from avalanche.training import StreamingLDA
    from sklearn.datasets import load_digits

    from strategies.estimators.class_stats import l2_normalize

    warnings.filterwarnings("ignore", message="No loggers specified")
    X, y = load_digits(return_X_y=True)
    X = l2_normalize(X.astype(float))
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order], y[order]
    train, test = slice(0, 1400), slice(1400, None)
    gda = GDA(shrinkage=0.5, priors="uniform").fit(X[train], y[train])
    s = gda.streaming_lda_shrinkage()
    mu = np.trace(gda.covariance_) / 64
    assert s == pytest.approx(0.5 * mu / (0.5 + 0.5 * mu)) and s < 0.01  # μ ≈ 1/D here

    def slda(shrinkage: float) -> StreamingLDA:
        return StreamingLDA(slda_model=torch.nn.Identity(), criterion=torch.nn.CrossEntropyLoss(),
                            input_size=64, num_classes=10, shrinkage_param=shrinkage, device="cpu")

    # 1. StreamingLDA given our exact statistics: the mapped s reproduces every prediction
    exact = slda(s)
    S = (gda.covariance_ - 0.5 * mu * np.eye(64)) / 0.5   # undo our shrinkage: S = W / N
    exact.muK = torch.tensor(gda.means_, dtype=torch.float64)
    exact.Sigma = torch.tensor(S, dtype=torch.float64)
    exact.num_updates, exact.prev_num_updates = 1400, -1
    predicted = exact.predict(torch.tensor(X[test], dtype=torch.float64)).argmax(1).numpy()
    assert np.array_equal(predicted, gda.predict(X[test]))

    # 2. learning sample by sample: mapped s agrees far better than the same number
    agreement = {}
    for name, shrinkage in (("same", 0.5), ("mapped", s)):
        model = slda(shrinkage)
        for xi, yi in zip(torch.tensor(X[train], dtype=torch.float32), torch.tensor(y[train]), strict=True):
            model.fit(xi[None], yi[None])
        pred = model.predict(torch.tensor(X[test], dtype=torch.float32)).argmax(1).numpy()
        agreement[name] = float(np.mean(pred == gda.predict(X[test])))
    assert agreement["mapped"] >= 0.99 > agreement["same"] + 0.02
