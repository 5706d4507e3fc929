"""scikit-learn estimators on frozen features, one class per module.

Running per-class statistics (:mod:`~strategies.estimators.class_stats`) under
:class:`~strategies.estimators.nmc.NMC`, :class:`~strategies.estimators.gda.GDA`,
:class:`~strategies.estimators.fecam.FeCAM` and
:class:`~strategies.estimators.klda.KLDA`; the prediction API of the other
analytic classifiers (:mod:`~strategies.estimators.incremental_classifier`) under
:class:`~strategies.estimators.ranpac.RanPAC` and
:class:`~strategies.estimators.rail.RAIL`; their parts: random-feature
transformers (:mod:`~strategies.estimators.random_features`), exact incremental
ridge regression (:mod:`~strategies.estimators.ridge`) and SLCA's classifier
alignment step (:mod:`~strategies.estimators.alignment`).
"""

from strategies.estimators.gda import GDA
from strategies.estimators.nmc import NMC

__all__ = ["GDA", "NMC"]
