"""Strategies: how a model learns from a stream, one task at a time.

Use :func:`get` to build a strategy by name (or from user code) with validated
options and :func:`available` to list them; :mod:`strategies.catalog` holds the
registered names. Layout: :mod:`strategies.estimators` (scikit-learn
estimators), :mod:`strategies.heads` (training-free heads on cached
features), :mod:`strategies.lora` (LoRA and CoDyRA), :mod:`strategies.avalanche`
(any avalanche strategy), :mod:`strategies.plugins` (replay, retention);
:class:`TrainingStrategy` is the public base for strategies that train.
Classes below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from strategies.catalog import PLUGINS, STRATEGIES

if TYPE_CHECKING:
    from cl.core.strategy import Strategy

_EXPORTS: dict[str, str] = {
    "NMC": "strategies.estimators.nmc",
    "GDA": "strategies.estimators.gda",
    "AvalancheStrategy": "strategies.avalanche.strategy",
    "LoRA": "strategies.lora.plain",
    "RankSelectiveLoRA": "strategies.lora.codyra",
    "TrainingStrategy": "strategies.adaptation.training",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'strategies' has no attribute {name!r}")


def get(name: str, /, **options: Any) -> Strategy:
    """Build strategy ``name`` with validated ``options``: a registered or entry-point name,
    ``path/to/file.py:Class``, ``package.module:Class`` or ``avalanche:NAME``
    (see :mod:`strategies.loading`)."""
    from strategies.loading import build_strategy

    return build_strategy(name, **options)


def available() -> list[str]:
    """Names of registered strategies and of installed ``cl.strategies`` entry points."""
    from strategies.loading import available_strategies

    return available_strategies()


__all__ = ["GDA", "NMC", "PLUGINS", "STRATEGIES", "AvalancheStrategy", "LoRA",
           "RankSelectiveLoRA", "TrainingStrategy", "available", "get"]
