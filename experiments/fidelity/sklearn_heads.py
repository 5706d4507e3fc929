"""NMC, GDA and the random-feature map of KLDA against scikit-learn's own estimators.

References executed (scikit-learn at the pinned version, imported unmodified):

* ``sklearn.neighbors.NearestCentroid`` vs ``NMC(metric="euclidean", normalize=False)`` on the
  raw features, and on L2-normalised features vs ``NMC(metric="euclidean", normalize=True)``
  (Janson et al.'s rule is NearestCentroid on normalised samples): centroids and predictions.
* ``sklearn.discriminant_analysis.LinearDiscriminantAnalysis(solver="lsqr", shrinkage=α)`` vs
  ``GDA(shrinkage=α, priors="empirical")`` (sklearn's default priors, the class frequencies):
  ``coef_``, ``intercept_``, decision function, predictions. With other priors sklearn weights
  the class covariances by the priors, where GDA keeps the pooled scatter (the maximum-likelihood
  shared covariance), so only the class-frequency priors are comparable.
  ``shrinkage="auto"``: sklearn's LDA standardises and shrinks each class covariance separately,
  so GDA's ``"auto"`` is compared with ``sklearn.covariance.ledoit_wolf_shrinkage`` on the
  within-class-centred samples (what its docstring claims), not with LDA.
* ``sklearn.kernel_approximation.RBFSampler(gamma="scale")`` vs ``RandomFourierFeatures`` (the map
  RanDumb and ``klda`` use): the transformed features.
* ``GDA.partial_fit`` over 3 class-incremental chunks vs ``LinearDiscriminantAnalysis`` fitted
  once on all data (exact incremental statistics).

Inputs: L2-normalised sklearn digits (D = 64, 10 classes, 1,797 samples) and random Gaussian
class clusters (D = 32, 6 classes, 40 per class). No change to the reference.
"""

from __future__ import annotations

import common

NAME = "sklearn-heads"
DESCRIPTION = "NMC, GDA and random Fourier features vs scikit-learn estimators"
REFERENCES = (common.PyPI("scikit-learn", "1.9.1"),)


def _data():
    import numpy as np
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 32))
    Xs = np.concatenate([c + 0.7 * rng.normal(size=(40, 32)) for c in centres])
    ys = np.repeat(np.arange(6), 40)
    return {"digits": (X, y), "clusters": (Xs, ys)}


def run(refs: common.Refs) -> list[common.Row]:
    refs.path(REFERENCES[0])
    import warnings

    import numpy as np
    from sklearn.covariance import ledoit_wolf_shrinkage
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.kernel_approximation import RBFSampler
    from sklearn.neighbors import NearestCentroid

    from strategies.estimators import GDA, NMC
    from strategies.estimators.class_stats import l2_normalize
    from strategies.estimators.random_features import RandomFourierFeatures

    warnings.filterwarnings("ignore", message=".*within_class_std_dev_", category=UserWarning)
    data = _data()
    rows = []
    for normalize in (False, True):
        cen, dis = 0.0, 0
        for X, y in data.values():
            ours = NMC(metric="euclidean", normalize=normalize).fit(X, y)
            Xr = l2_normalize(X) if normalize else X
            ref = NearestCentroid().fit(Xr, y)
            cen = max(cen, common.max_diff(ours.means_, ref.centroids_)[0])
            dis += int(np.sum(ours.predict(X) != ref.predict(Xr)))
        method = f"`NMC(metric=\"euclidean\", normalize={normalize})`"
        what = "NearestCentroid" + (" on L2-normalised samples" if normalize else "")
        rows.append(common.Row(method, f"centroids vs {what} (digits, clusters)", cen,
                               tol=1e-12))
        rows.append(common.Row(method, f"prediction disagreements vs {what} (2,037 predictions)",
                               dis, tol=0, dtype="count"))

    for alpha in (0.1, 0.5):
        for priors in ("empirical",):
            worst = {"coef": 0.0, "intercept": 0.0, "scores": 0.0}
            dis = 0
            for X, y in data.values():
                ours = GDA(shrinkage=alpha, priors=priors).fit(X, y)
                ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=alpha).fit(X, y)
                worst["coef"] = max(worst["coef"], common.max_diff(ours.coef_, ref.coef_)[1])
                worst["intercept"] = max(worst["intercept"],
                                         common.max_diff(ours.intercept_, ref.intercept_)[1])
                worst["scores"] = max(worst["scores"], common.max_diff(
                    ours.decision_function(X), ref.decision_function(X))[1])
                dis += int(np.sum(ours.predict(X) != ref.predict(X)))
            method = f"`GDA(shrinkage={alpha}, priors=\"{priors}\")`"
            ref_name = f"LDA(solver=\"lsqr\", shrinkage={alpha})"
            for key, val in worst.items():
                rows.append(common.Row(method, f"{key} vs {ref_name}, relative", float("nan"),
                                       val, tol=1e-9, tol_on="rel"))
            rows.append(common.Row(method, f"prediction disagreements vs {ref_name}", dis,
                                   dtype="count", tol=0))

    lw = 0.0
    for X, y in data.values():
        ours = GDA(shrinkage="auto").fit(X, y)
        centred = X - NearestCentroid().fit(X, y).centroids_[np.searchsorted(np.unique(y), y)]
        lw = max(lw, abs(ours.shrinkage_ - ledoit_wolf_shrinkage(centred, assume_centered=True)))
    rows.append(common.Row("`GDA(shrinkage=\"auto\")`",
                           "coefficient vs ledoit_wolf_shrinkage of the class-centred samples",
                           lw, tol=1e-12))

    worst, dis = 0.0, 0
    for X, y in data.values():
        classes = np.unique(y)
        ours = GDA(shrinkage=0.2, priors="empirical")
        for chunk in np.array_split(classes, 3):
            mask = np.isin(y, chunk)
            ours.partial_fit(X[mask], y[mask])
        ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=0.2).fit(X, y)
        worst = max(worst, common.max_diff(ours.decision_function(X),
                                           ref.decision_function(X))[1])
        dis += int(np.sum(ours.predict(X) != ref.predict(X)))
    rows.append(common.Row("`GDA.partial_fit`, 3 class-incremental chunks",
                           "scores vs LDA fitted once on all data, relative", float("nan"), worst,
                           tol=1e-9, tol_on="rel"))
    rows.append(common.Row("`GDA.partial_fit`, 3 class-incremental chunks",
                           "prediction disagreements vs LDA fitted once", dis, dtype="count",
                           tol=0))

    feat = 0.0
    for X, _ in data.values():
        ours = RandomFourierFeatures(n_components=500, random_state=3, dtype="float64").fit(X)
        ref = RBFSampler(gamma="scale", n_components=500, random_state=3).fit(X)
        feat = max(feat, common.max_diff(ours.transform(X), ref.transform(X))[0])
    rows.append(common.Row("`RandomFourierFeatures` (klda's map)",
                           "features vs RBFSampler(gamma=\"scale\"), same random_state", feat,
                           tol=1e-12))
    return rows
