"""scikit-learn estimators on frozen features, one class per module: running per-class
statistics (:mod:`~strategies.estimators.class_stats`), :class:`~strategies.estimators.nmc.NMC`,
:class:`~strategies.estimators.gda.GDA`."""

from strategies.estimators.gda import GDA
from strategies.estimators.nmc import NMC

__all__ = ["GDA", "NMC"]
