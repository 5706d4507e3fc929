"""Strategies and plugins from user code: names, files, modules and entry points.

A strategy (or plugin) *spec* is one of

``NAME``
    a registered name (``finetune``, ``nmc``...) or the name of an installed
    entry point in the group ``cl.strategies`` (``cl.plugins`` for plugins);
``path/to/file.py:ClassName``
    a class (or factory function) defined in a Python file anywhere on disk;
``package.module:ClassName``
    a class importable from ``sys.path``;
``avalanche:NAME``
    an avalanche training strategy (``avalanche:EWC``), wrapped by
    :class:`strategies.avalanche.AvalancheStrategy` (strategies only).

Options (config files, ``--set strategy.NAME=value``) are validated against
the keyword parameters of the class constructor with
:func:`cl.config.options.bind_options` before anything is built, and the built object
is checked against the protocol (:func:`cl.core.strategy.check_strategy`), so a
missing ``train_task`` or ``predict`` is reported by name.

Registering from an installed package (``pyproject.toml``)::

    [project.entry-points."cl.strategies"]
    ridge = "my_package.ridge:RidgeStrategy"
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cl.config.options import bind_options, describe_options
from cl.config.registry import Registry
from cl.errors import ProtocolError
from strategies.catalog import PLUGINS, STRATEGIES

if TYPE_CHECKING:
    from cl.core.plugin import Plugin
    from cl.core.strategy import Strategy

STRATEGY_GROUP = "cl.strategies"
PLUGIN_GROUP = "cl.plugins"
AVALANCHE_PREFIX = "avalanche:"


def entry_points(group: str = STRATEGY_GROUP) -> dict[str, importlib.metadata.EntryPoint]:
    """Installed entry points of ``group``, by name (read fresh on every call)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}


def is_code_spec(spec: str) -> bool:
    """Whether ``spec`` names code (``file.py:Class`` or ``module:Class``), not a name."""
    if spec.startswith(AVALANCHE_PREFIX):
        return False
    target, sep, attr = spec.rpartition(":")
    return bool(sep and target and attr)


def _is_file_target(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def load_file(path: str | Path, attr: str) -> Any:
    """Import ``attr`` from the Python file ``path`` (a fresh module per file content).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist (the message gives the absolute path tried).
    ValueError
        The file defines no ``attr`` (the message lists the classes it defines).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"strategy file {str(path)!r} does not exist (looked at {file.resolve()}); "
            "give a path to a .py file, e.g. 'experiments/examples/ridge_strategy.py:RidgeStrategy'."
        )
    file = file.resolve()
    digest = hashlib.sha1(f"{file}:{file.stat().st_mtime_ns}".encode()).hexdigest()[:12]
    name = f"cl_user_code.{file.stem}_{digest}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot import {str(file)!r} as a Python module; is it a .py file?")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up here
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return _attribute(module, attr, where=str(path))


def load_module(module_name: str, attr: str) -> Any:
    """Import ``attr`` from the importable module ``module_name``.

    Raises
    ------
    ValueError
        The module cannot be found, or has no ``attr``.
    """
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise ValueError(
                f"cannot import module {module_name!r} ({err}); is the package installed or on "
                "PYTHONPATH? For a file, write 'path/to/file.py:ClassName'."
            ) from err
        raise
    return _attribute(module, attr, where=module_name)


def _attribute(module: Any, attr: str, where: str) -> Any:
    if not hasattr(module, attr):
        classes = sorted(
            n for n, v in vars(module).items()
            if inspect.isclass(v) and v.__module__ == module.__name__ and not n.startswith("_")
        )
        raise ValueError(
            f"{where} defines no {attr!r}; classes defined there: {', '.join(classes) or '(none)'}."
        )
    return getattr(module, attr)


def load_object(spec: str) -> Any:
    """The class or factory a ``file.py:Class`` or ``module:Class`` spec points to."""
    target, _, attr = spec.rpartition(":")
    if _is_file_target(target):
        return load_file(target, attr)
    return load_module(target, attr)


def _factory(spec: str, registry: Registry[Any], group: str) -> Callable[..., Any]:
    """Resolve a spec (not ``avalanche:``) to the callable that builds it."""
    if spec in registry:
        return registry.entry(spec).factory
    if is_code_spec(spec):
        obj = load_object(spec)
    else:
        eps = entry_points(group)
        if spec not in eps:
            hint = "" if group != STRATEGY_GROUP else ", 'avalanche:NAME'"
            err = registry.unknown(spec, list(eps))
            raise ValueError(f"{err} Or give code as 'path/to/file.py:ClassName', "
                             f"'package.module:ClassName'{hint}.")
        obj = eps[spec].load()
    if not callable(obj):
        raise ProtocolError(
            f"{registry.kind} {spec!r} is a {type(obj).__name__}, not a class or factory.")
    return obj


def build_strategy(spec: str, /, **options: Any) -> Strategy:
    """Build the strategy ``spec`` with validated ``options``.

    Parameters
    ----------
    spec : str
        Registered name, entry-point name, ``file.py:Class``, ``module:Class`` or
        ``avalanche:NAME`` (see module docstring).
    **options
        Constructor options, validated against the constructor's signature.

    Raises
    ------
    FileNotFoundError, ValueError, OptionError, ProtocolError
        Missing file, unknown name or option, wrong option type, or a class that
        does not implement the strategy protocol (the missing or misnamed hooks are named).
    """
    from cl.core.strategy import check_strategy

    if spec.startswith(AVALANCHE_PREFIX):
        from strategies.avalanche.strategy import AvalancheStrategy

        return AvalancheStrategy(spec[len(AVALANCHE_PREFIX):], **options)
    if spec in STRATEGIES:
        strategy = STRATEGIES.get(spec, **options)
    else:
        factory = _factory(spec, STRATEGIES, STRATEGY_GROUP)
        strategy = factory(**bind_options(factory, options, where=f"strategy {spec!r}"))
    check_strategy(strategy)
    return strategy


def strategy_label(strategy: Any) -> str:
    """The one label a run of ``strategy`` carries in its results, whether built from the
    command line or from Python: the registered name (``nmc``) or entry-point name when its
    class is registered, ``avalanche:NAME`` for a wrapped avalanche strategy, else the class
    name."""
    cls = type(strategy)
    if cls.__name__ == "AvalancheStrategy" and cls.__module__ == "strategies.avalanche.strategy":
        return f"{AVALANCHE_PREFIX}{strategy.name}"
    target = f"{cls.__module__}:{cls.__qualname__}"
    installed = (name for name, ep in entry_points(STRATEGY_GROUP).items() if ep.value == target)
    return STRATEGIES.name_of(cls) or next(installed, None) or cls.__name__


def build_plugin(spec: str, /, **options: Any) -> Plugin:
    """Build the plugin ``spec`` (registered name, entry point in ``cl.plugins``, or code)."""
    from cl.core.plugin import check_plugin

    factory = _factory(spec, PLUGINS, PLUGIN_GROUP)
    reserved = PLUGINS.entry(spec).reserved if spec in PLUGINS else ()
    plugin = factory(**bind_options(factory, options, where=f"plugin {spec!r}", reserved=reserved))
    check_plugin(plugin)
    return plugin


def available_strategies() -> list[str]:
    """Registered strategy names plus installed ``cl.strategies`` entry points."""
    return sorted(set(STRATEGIES.available()) | set(entry_points(STRATEGY_GROUP)))


def available_plugins() -> list[str]:
    """Registered plugin names plus installed ``cl.plugins`` entry points."""
    return sorted(set(PLUGINS.available()) | set(entry_points(PLUGIN_GROUP)))


def describe(spec: str, kind: str = "strategy") -> tuple[str, dict[str, str]]:
    """One-line description and ``{option: "type = default"}`` of a strategy or plugin spec
    (for ``cl list``); ``avalanche:NAME`` lists the wrapper's and avalanche's options.
    """
    if kind == "strategy" and spec.startswith(AVALANCHE_PREFIX):
        from strategies.avalanche.strategy import avalanche_options

        return f"avalanche {spec[len(AVALANCHE_PREFIX):]} (wrapped)", avalanche_options(
            spec[len(AVALANCHE_PREFIX):]
        )
    registry, group = (STRATEGIES, STRATEGY_GROUP) if kind == "strategy" else (PLUGINS, PLUGIN_GROUP)
    if spec in registry:
        return registry.entry(spec).describe()
    factory = _factory(spec, registry, group)
    doc = next(iter((factory.__doc__ or "").strip().splitlines()), "")
    return doc, describe_options(factory)
