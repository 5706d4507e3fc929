"""The avalanche plugins the wrapper attaches: our plugins' bridge, and a silent evaluator."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from strategies.avalanche.strategy import AvalancheStrategy


def silent_evaluator() -> Any:
    """An avalanche ``EvaluationPlugin`` with no metrics and no loggers (no console output)."""
    from avalanche.training.plugins import EvaluationPlugin

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No loggers specified")
        return EvaluationPlugin(loggers=[])


def plugin_bridge(owner: AvalancheStrategy) -> Any:
    """An avalanche plugin forwarding minibatches to our plugins (``ctx.before_batch``...)."""
    from avalanche.core import SupervisedPlugin

    class PluginBridge(SupervisedPlugin):
        def before_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
            ctx = owner._ctx
            if ctx is None:
                return
            x, y, t = strategy.mbatch[0], strategy.mbatch[1], strategy.mbatch[-1]
            n = x.shape[0]
            ctx.count("examples_seen", n)
            if not ctx.plugins:
                return
            x2, y2 = ctx.before_batch(x, y)
            if x2 is x and y2 is y:
                return
            extra = x2.shape[0] - n
            t2 = torch.cat([t, t[:1].expand(extra)]) if extra > 0 else t[: x2.shape[0]]
            strategy.mbatch = [x2, y2, *strategy.mbatch[2:-1], t2]

        def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
            # after avalanche's make_optimizer, which resets the state on its first call
            if owner._pending_optimizer is not None:
                strategy.optimizer.load_state_dict(owner._pending_optimizer)
                owner._pending_optimizer = None

        def after_update(self, strategy: Any, **kwargs: Any) -> None:
            if owner._ctx is not None and owner._ctx.plugins:
                owner._ctx.after_batch(strategy.loss.detach())

    return PluginBridge()
