"""Avalanche training strategies as baselines, on our streams, runner and tracker.

``AvalancheStrategy("EWC", ewc_lambda=0.4)`` (or ``cl run --strategy
avalanche:EWC --set strategy.ewc_lambda=0.4``) builds avalanche's own
``avalanche.training.EWC`` around a model made of the frozen backbone's image
encoder and a trainable head, and hands it one task at a time as an avalanche
experience. Modules, one concern each:

:mod:`~strategies.avalanche.catalog`
    avalanche's strategy classes by name, and their options;
:mod:`~strategies.avalanche.modules`
    the masked head and the frozen encoder the avalanche model is made of;
:mod:`~strategies.avalanche.experiences`
    our tasks as avalanche experiences (public avalanche API only);
:mod:`~strategies.avalanche.bridge`
    the avalanche plugin that forwards minibatches to our plugins;
:mod:`~strategies.avalanche.strategy`
    :class:`~strategies.avalanche.strategy.AvalancheStrategy` itself.

Avalanche is imported lazily, inside functions: importing it pulls wandb and
patches ``torch.utils.data.Dataset.__add__``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "AvalancheStrategy": "strategies.avalanche.strategy",
    "MaskedHead": "strategies.avalanche.modules",
    "FrozenEncoder": "strategies.avalanche.modules",
    "make_experience": "strategies.avalanche.experiences",
    "make_stream": "strategies.avalanche.experiences",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'strategies.avalanche' has no attribute {name!r}")


__all__ = ["AvalancheStrategy", "FrozenEncoder", "MaskedHead", "make_experience", "make_stream"]
