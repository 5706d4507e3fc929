"""Plugins: small behaviours attachable to any strategy.

A plugin overrides any of the hooks below; the runner (task and evaluation
hooks) and the strategy's training loop (batch hooks, through
``ctx.before_batch``/``ctx.after_batch``) call them with an explicit context.
An exception inside a hook is re-raised as :class:`PluginError` naming the
plugin and the hook; the runner keeps the results recorded so far.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cl.core.hooks import PLUGIN_HOOKS, check_hook_names
from cl.errors import PluginError, ProtocolError

if TYPE_CHECKING:
    import torch

    from cl.core.strategy import Context, TaskData


class Plugin:
    """Base class; every hook is a no-op by default.

    Attributes
    ----------
    name : str
        Name used in messages and results (defaults to the class name).
    """

    name: str = ""

    def before_task(self, ctx: Context) -> None:
        """Before the strategy's ``before_task``."""

    def after_train(self, data: TaskData, ctx: Context) -> None:
        """After the strategy's ``train_task``, with the task's training data.

        ``data`` is what the strategy was given (cached features (N, D) for
        feature strategies, the preprocessed dataset for image strategies) with
        global targets (N,); read-only by convention. Use it for statistics of
        the task (class-wise Gaussians, exemplar selection...).
        """

    def after_task(self, ctx: Context) -> None:
        """After the strategy's ``after_task``, before evaluation."""

    def before_batch(
        self, x: torch.Tensor, y: torch.Tensor, ctx: Context
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """May return an extended batch (e.g. with replayed exemplars); default unchanged."""
        return x, y

    def after_batch(self, loss: torch.Tensor, ctx: Context) -> None:
        """After one optimiser step of the strategy."""

    def after_eval(self, ctx: Context, accuracies: dict[str, float]) -> None:
        """After the evaluation row following task ``ctx.task_index`` (task name → accuracy)."""

    def state_dict(self) -> dict[str, Any]:
        """State carried across tasks, for resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


def plugin_name(plugin: object) -> str:
    return getattr(plugin, "name", "") or type(plugin).__name__


def call_plugin(plugin: Plugin, hook: str, *args: Any) -> Any:
    """Call ``plugin.hook(*args)``, wrapping any error in :class:`PluginError`."""
    if hook not in PLUGIN_HOOKS:
        raise ValueError(f"unknown plugin hook {hook!r}; valid hooks: {', '.join(PLUGIN_HOOKS)}.")
    try:
        return getattr(plugin, hook)(*args)
    except PluginError:
        raise
    except Exception as err:  # re-raised with the plugin and hook named
        raise PluginError(plugin_name(plugin), hook, err) from err



def check_plugin(obj: object) -> None:
    """Raise :class:`~cl.errors.ProtocolError` unless ``obj`` is a usable plugin.

    Every hook must be callable (subclass :class:`Plugin` and override what you
    need), and no method may be named like a hook without being one.
    """
    missing = [h for h in PLUGIN_HOOKS if not callable(getattr(obj, h, None))]
    if missing:
        raise ProtocolError(
            f"{type(obj).__name__} is not a plugin: missing {', '.join(missing)}. "
            "Subclass cl.Plugin and override the hooks you need."
        )
    check_hook_names(obj, PLUGIN_HOOKS, Plugin, "plugin")
