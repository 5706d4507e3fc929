"""Strategies: how a model learns from a stream, one task at a time.

Use :func:`get` to build a registered strategy by name with validated options
and :func:`available` to list them. Each strategy module registers itself on
import; import it here.
"""

from __future__ import annotations

from typing import Any

from cl.strategy import STRATEGIES, Context, Strategy, TaskData
from strategies import finetune, gda, loading, nmc, replay, retention, zeroshot  # noqa: F401  (registration)
from strategies._estimators import GDA, NMC
from strategies.heads import fecam, klda, rail, ranpac  # noqa: F401  (registration)
from strategies.avalanche_strategy import AvalancheStrategy
from strategies.lora import LoRA, RankSelectiveLoRA


def get(name: str, /, **options: Any) -> Strategy:
    """Build strategy ``name`` with validated ``options``: a registered or entry-point name,
    ``path/to/file.py:Class``, ``package.module:Class`` or ``avalanche:NAME``
    (see :mod:`strategies.loading`)."""
    return loading.build_strategy(name, **options)


def available() -> list[str]:
    """Names of registered strategies and of installed ``cl.strategies`` entry points."""
    return loading.available_strategies()


__all__ = ["GDA", "NMC", "STRATEGIES", "AvalancheStrategy", "Context", "LoRA", "RankSelectiveLoRA", "Strategy", "TaskData", "available", "get"]
