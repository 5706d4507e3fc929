"""Check a whole config at once, from source, before anything is imported or built.

:func:`problems` reads the option schemas of the named stream, strategy,
plugins and ``[protocol]`` from their source with :mod:`ast` (as ``cl list``
does) and checks every option name and type against them, plus the size
limits of :mod:`cl.config.limits`. It imports no torch and no user code, and it
does not stop at the first mistake: ``cl run --dry-run`` and ``cl sweep``
report every problem of a config in one message (:class:`ConfigErrors`).

What it cannot see from source (a factory taking ``**kwargs``, an entry point,
``avalanche:NAME``, value ranges checked by a constructor) is checked later,
when :func:`cl.config.experiment.plan` builds the run.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cl.config import code, limits
from cl.config.options import coerce, suggest
from cl.config.problems import CONFIG_ERRORS, ConfigErrors, Problems
from cl.config.registry import Registry, _dataclass_fields, _find, _options_class

#: Where the ``[protocol]`` table's keys are defined.
PROTOCOL_TARGET = "cl.core.selection:Protocol"
#: Integer options with these names (or ending in ``_seed``) seed NumPy: 0 .. 2**32 - 1.
SEED_MAX = 2**32 - 1


@functools.lru_cache(maxsize=256)
def source_schema(target: str, reserved: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """``{option: annotation}`` of a ``module:attr`` factory read from its source, or None when
    the source cannot say (``**kwargs``, an inherited ``__init__``, no Python source).

    Annotations are those :func:`cl.config.code.static_options` understands (``int``,
    ``float``, ``bool``, ``str``, ``Literal``, ``X | None``, lists); any other is ``Any``.
    Cached per process (a sweep checks thousands of configs): do not modify the result.
    """
    module, _, attr = target.partition(":")
    try:
        found = _find(module, attr)
    except (ImportError, SyntaxError, ValueError):
        return None
    if found is None:
        return None
    node, where = found
    if isinstance(node, ast.ClassDef):
        options_class = _options_class(node, where)
        if options_class is not None:
            return _dataclass_schema(*options_class, reserved)
        if any("dataclass" in ast.unparse(d) for d in node.decorator_list):
            return _dataclass_schema(node, where, reserved)  # a dataclass (Protocol)
        schema = code.static_options(node)
        return None if schema is None else {k: v for k, v in schema.items() if k not in reserved}
    if isinstance(node, ast.FunctionDef):
        args = node.args
        if args.vararg or args.kwarg:
            return None
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        return {a.arg: code._annotation(a.annotation) for a in params
                if a.arg not in ("self", "cls", *reserved)}
    return None


def _dataclass_schema(node: ast.ClassDef, module: str, reserved: tuple[str, ...]) -> dict[str, Any]:
    fields = _dataclass_fields(node, module)  # names, base classes first
    annotations: dict[str, Any] = {}
    for cls_node in _class_chain(node, module):
        for stmt in cls_node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                annotations[stmt.target.id] = code._annotation(stmt.annotation)
    return {name: annotations.get(name, Any) for name in fields if name not in reserved}


def _class_chain(node: ast.ClassDef, module: str) -> list[ast.ClassDef]:
    chain: list[ast.ClassDef] = []
    for base in node.bases:
        found = _find(module, base.id) if isinstance(base, ast.Name) else None
        if found is not None and isinstance(found[0], ast.ClassDef):
            chain += _class_chain(found[0], found[1])
    return [*chain, node]


def check_options(schema: Mapping[str, Any], options: Mapping[str, Any], where: str,
                  prefix: str, out: Problems) -> None:
    """Every unknown name, wrong type, out-of-range seed and oversized count in ``options``."""
    for key, value in options.items():
        with out.catch():
            if key not in schema:
                raise ValueError(f"{where} has no option {key!r};{suggest(key, schema)} valid "
                                 f"options: {', '.join(sorted(schema)) or '(none)'}.")
            coerce(value, schema[key], f"{where} option {key!r}")
            if (key == "seed" or key.endswith("_seed")) and isinstance(value, int) \
                    and not isinstance(value, bool) and not 0 <= value <= SEED_MAX:
                raise ValueError(f"{prefix}{key}={value}: a seed must be an integer in "
                                 f"0..{SEED_MAX} (NumPy's seed range).")


def _check_named(registry: Registry[Any], name: str, options: Mapping[str, Any], prefix: str,
                 out: Problems, allow_other: Callable[[str], bool] = lambda _: False) -> None:
    if name not in registry:
        if not allow_other(name):
            out.errors.append(registry.unknown(name))
        return
    entry = registry.entry(name)
    schema = source_schema(entry.target, entry.reserved) if entry.target else None
    if schema is not None:
        check_options(schema, options, f"{registry.kind} {name!r}", prefix, out)


def _check_code(spec: str, options: Mapping[str, Any], kind: str, prefix: str,
                out: Problems) -> None:
    """A ``file.py:Class`` spec and its options, from source (nothing imported)."""
    with out.catch():
        parsed = code.parse(spec)
        assert parsed is not None
        file = code.source_path(parsed, kind)
        schema = _code_schema(file, file.stat().st_mtime_ns, parsed.attr, spec, kind)
        if schema is not None:
            check_options(schema, options, f"{kind} {spec!r}", prefix, out)


@functools.lru_cache(maxsize=256)
def _code_schema(file: Path, mtime_ns: int, attr: str, spec: str, kind: str) -> dict[str, Any] | None:
    """The options of class ``attr`` in ``file`` from its source (cached per file version)."""
    node = code.check_source(file, attr, spec, kind)
    return None if node is None else code.static_options(node)


def problems(config: Any, out: Problems | None = None) -> Problems:
    """Every problem of ``config`` (a :class:`~cl.config.RunConfig`) found from source.

    Parameters
    ----------
    config : RunConfig
    out : Problems or None
        Where to add them (e.g. after the errors of reading the file); a new one by default.

    Returns
    -------
    Problems
        Call :meth:`Problems.raise_if_any` to stop on them.
    """
    import streams
    from strategies.catalog import PLUGINS, STRATEGIES

    out = out or Problems()
    _check_named(streams.STREAMS, config.stream, config.stream_options, "stream.", out)
    if code.parse(config.strategy) is not None:
        _check_code(config.strategy, config.strategy_options, "strategy", "strategy.", out)
    else:
        _check_named(STRATEGIES, config.strategy, config.strategy_options, "strategy.", out,
                     lambda n: n.startswith(code.AVALANCHE_PREFIX) or _entry_point(n, "strategies"))
    for name, options in config.plugins.items():
        if code.parse(name) is not None:
            _check_code(name, options, "plugin", f"plugins.{name}.", out)
        else:
            _check_named(PLUGINS, name, options, f"plugins.{name}.", out,
                         lambda n: _entry_point(n, "plugins"))
    schema = source_schema(PROTOCOL_TARGET)
    if schema is not None:
        check_options(schema, config.protocol, "[protocol]", "protocol.", out)
    if not getattr(config, "allow_large", False):
        for err in limits.oversized(config):
            out.errors.append(err)
    return out


def _entry_point(name: str, group: str) -> bool:
    import importlib.metadata

    return any(ep.name == name for ep in importlib.metadata.entry_points(group=f"cl.{group}"))


def check(config: Any, where: str = "config") -> None:
    """Raise every problem :func:`problems` finds in ``config`` at once (nothing when none)."""
    problems(config).raise_if_any(where)


__all__ = ["CONFIG_ERRORS", "ConfigErrors", "Problems", "check", "check_options", "problems",
           "source_schema"]
