"""Strategies and plugins from user code: names, files, modules and entry points.

A strategy (or plugin) *spec* is one of

``NAME``
    a registered name (``finetune``, ``nmc``...) or the name of an installed
    entry point in the group ``cl.strategies`` (``cl.plugins`` for plugins);
``path/to/file.py:ClassName``
    a class defined in a Python file anywhere on disk;
``package.module:ClassName``
    a class importable from ``sys.path``;
``avalanche:NAME``
    an avalanche training strategy (``avalanche:EWC``), wrapped by
    :class:`strategies.avalanche.AvalancheStrategy` (strategies only).

A spec read from a config may name only a class subclassing :class:`cl.Strategy`
(:class:`cl.Plugin` for plugins): the source is located and parsed before
anything is imported, and the class is checked before it is called (see
:mod:`cl.config.code`), so ``os:system`` is refused without running.

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

import importlib
import importlib.metadata
import inspect
from typing import TYPE_CHECKING, Any

from cl.config import code
from cl.config.code import AVALANCHE_PREFIX
from cl.config.options import bind_options, coerce, describe_options, suggest
from cl.config.registry import Registry
from cl.errors import ProtocolError
from strategies.catalog import PLUGINS, STRATEGIES

if TYPE_CHECKING:
    from cl.core.plugin import Plugin
    from cl.core.strategy import Strategy

STRATEGY_GROUP = "cl.strategies"
PLUGIN_GROUP = "cl.plugins"


def entry_points(group: str = STRATEGY_GROUP) -> dict[str, importlib.metadata.EntryPoint]:
    """Installed entry points of ``group``, by name (read fresh on every call)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}


def is_code_spec(spec: str) -> bool:
    """Whether ``spec`` names code (``file.py:Class`` or ``module:Class``), not a name."""
    return code.parse(spec) is not None


def _base(kind: str) -> type:
    """The class every ``kind`` named by a config must subclass."""
    if kind == "strategy":
        from cl.core.strategy import Strategy

        return Strategy
    from cl.core.plugin import Plugin

    return Plugin


def _checked_class(obj: Any, spec: str, kind: str) -> type:
    """``obj`` if it is a class subclassing the ``kind`` base; ``ProtocolError`` before any call."""
    base = _base(kind)
    if inspect.isclass(obj) and issubclass(obj, base):
        return obj
    what = f"the class {obj.__qualname__}" if inspect.isclass(obj) else \
        f"a {type(obj).__name__} ({getattr(obj, '__qualname__', repr(obj)[:40])})"
    raise ProtocolError(
        f"{kind} {spec!r} is {what}, not a subclass of cl.{base.__name__}; a config may only name "
        f"a class that subclasses cl.{base.__name__} (nothing else is ever called)."
    )


def load_code(spec: str, kind: str = "strategy") -> type:
    """The class a ``file.py:Class`` or ``module:Class`` spec names, checked before it is called.

    The source is located and parsed first (:mod:`cl.config.code`): nothing is
    imported unless it defines or re-exports a class of that name.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file or module, syntax error (``file:line``), no such class, or an
        error while importing (``file:line``).
    ProtocolError
        The name is not a class subclassing cl.Strategy (cl.Plugin).
    """
    parsed = code.parse(spec)
    if parsed is None:
        raise ValueError(f"{spec!r} is not a code spec; write 'path/to/file.py:ClassName' or "
                         "'package.module:ClassName'.")
    file = code.source_path(parsed, kind)
    code.check_source(file, parsed.attr, spec, kind)
    if parsed.kind == "file":
        obj = code.import_file(file, parsed.attr, spec)
    else:
        try:
            module = importlib.import_module(parsed.target)
        except Exception as err:
            raise ValueError(f"importing module {parsed.target!r} ({spec!r}) failed: "
                             f"{type(err).__name__}: {err}") from err
        obj = getattr(module, parsed.attr)
    return _checked_class(obj, spec, kind)


def _factory(spec: str, registry: Registry[Any], group: str) -> Any:
    """The class a spec (not ``avalanche:``) names: registered, code, or entry point."""
    kind = "strategy" if group == STRATEGY_GROUP else "plugin"
    if spec in registry:
        return registry.entry(spec).factory
    if is_code_spec(spec):
        return load_code(spec, kind)
    eps = entry_points(group)
    if spec not in eps:
        hint = "" if group != STRATEGY_GROUP else ", 'avalanche:NAME'"
        err = registry.unknown(spec, list(eps))
        raise ValueError(f"{err} Or give code as 'path/to/file.py:ClassName', "
                         f"'package.module:ClassName'{hint}.")
    return _checked_class(eps[spec].load(), spec, kind)


def check_code_options(spec: str, options: dict[str, Any], kind: str = "strategy") -> str:
    """Check a code spec and its options from source alone (``--dry-run``): nothing is imported
    or called. Returns what was checked, for the plan.

    Raises
    ------
    FileNotFoundError, ValueError, OptionError
        As :func:`load_code`, plus an unknown option or a value of the wrong simple type.
    """
    parsed = code.parse(spec)
    if parsed is None:
        raise ValueError(f"{spec!r} is not a code spec.")
    file = code.source_path(parsed, kind)
    node = code.check_source(file, parsed.attr, spec, kind)
    schema = None if node is None else code.static_options(node)
    if schema is None:
        return f"{file} (class found; options are checked when the run starts)"
    where = f"{kind} {spec!r}"
    for key, value in options.items():
        if key not in schema:
            raise ValueError(f"{where} has no option {key!r};{suggest(key, schema)} valid options: "
                             f"{', '.join(sorted(schema)) or '(none)'}.")
        coerce(value, schema[key], f"{where} option {key!r}")
    return f"{file} (class and options checked from source, not imported)"


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
        Missing file, unknown name or option, wrong option type, a name that is not a
        subclass of cl.Strategy, or a class that does not implement the strategy
        protocol (the missing or misnamed hooks are named).
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


def check_spec(spec: str, options: dict[str, Any], kind: str = "strategy") -> str:
    """Validate ``spec`` and its ``options`` without calling user code (``--dry-run``).

    Code specs are checked from source (:func:`check_code_options`); an entry
    point is imported and its options bound, but not called; registered names and
    ``avalanche:`` are the library's own and are built (their constructors check
    value ranges). Returns what was checked.
    """
    if is_code_spec(spec):
        return check_code_options(spec, options, kind)
    registry, group = (STRATEGIES, STRATEGY_GROUP) if kind == "strategy" else (PLUGINS, PLUGIN_GROUP)
    if spec in registry or (kind == "strategy" and spec.startswith(AVALANCHE_PREFIX)):
        (build_strategy if kind == "strategy" else build_plugin)(spec, **options)
        return "built-in"
    factory = _factory(spec, registry, group)
    bind_options(factory, options, where=f"{kind} {spec!r}")
    return f"entry point {factory.__module__}:{factory.__qualname__} (imported, not called)"


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
