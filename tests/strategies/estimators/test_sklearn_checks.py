"""scikit-learn's estimator checks on every new estimator (small random-feature widths)."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from strategies.estimators.fecam import FeCAM
from strategies.estimators.klda import KLDA
from strategies.estimators.rail import RAIL
from strategies.estimators.random_features import RandomFourierFeatures, RandomReLUFeatures
from strategies.estimators.ranpac import RanPAC
from strategies.estimators.ridge import IncrementalRidge


@parametrize_with_checks([
    IncrementalRidge(alpha=1.0),
    IncrementalRidge(),
    RanPAC(n_components=64),
    FeCAM(),
    FeCAM(covariance="shared"),
    FeCAM(covariance="lowrank", rank=2),
    KLDA(n_components=64),
    RAIL(n_components=64),
    RAIL(form="dual"),
    RandomReLUFeatures(16),
    RandomFourierFeatures(16),
])
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)
