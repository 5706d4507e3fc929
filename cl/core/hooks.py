"""Hook names of strategies and plugins, and the check that catches misspelt ones.

A method named like a hook but not one (``after_tsak``, ``before_trian``)
would never be called; :func:`check_hook_names` makes it an error when the
strategy or plugin is loaded, naming the closest valid hook.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Sequence

from cl.errors import ProtocolError

STRATEGY_HOOKS: tuple[str, ...] = ("before_task", "train_task", "after_task", "predict")
PLUGIN_HOOKS: tuple[str, ...] = (
    "before_task", "after_train", "after_task", "before_batch", "after_batch", "after_eval",
)
#: Prefixes that mark a method as meant to be a hook.
HOOK_PREFIXES: tuple[str, ...] = ("before_", "after_")


def _own_methods(cls: type, base: type | None) -> list[str]:
    """Public method names defined by ``cls`` and its bases, above ``base`` and ``object``."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or (base is not None and klass is base):
            break
        names.update(n for n, v in vars(klass).items()
                     if not n.startswith("_") and inspect.isfunction(v))
    return sorted(names)


def check_hook_names(obj: object, hooks: Sequence[str], base: type, kind: str) -> None:
    """Raise :class:`~cl.errors.ProtocolError` if ``obj`` defines a method named like a hook.

    Parameters
    ----------
    obj : object
        A strategy or plugin instance (or class).
    hooks : sequence of str
        The valid hook names of ``kind``.
    base : type
        The protocol's base class; names it defines (hooks and helpers) are valid.
    kind : str
        ``"strategy"`` or ``"plugin"``, for the message.
    """
    cls = obj if isinstance(obj, type) else type(obj)
    valid = set(hooks) | {n for n in dir(base) if not n.startswith("_")}
    for name in _own_methods(cls, base if issubclass(cls, base) else None):
        if name in valid:
            continue
        looks_like = difflib.get_close_matches(name, hooks, n=1, cutoff=0.8)
        if looks_like or name.startswith(HOOK_PREFIXES):
            close = difflib.get_close_matches(name, hooks, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ProtocolError(
                f"{cls.__name__}.{name} is named like a {kind} hook but is not one, so it would "
                f"never be called.{hint} Valid {kind} hooks: {', '.join(hooks)}."
            )
