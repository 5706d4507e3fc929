"""Name → factory registries for streams, strategies and plugins.

An entry names its factory by *target* (``"package.module:attr"``) and is
imported only when built, so listing names, descriptions and options (``cl
list``) reads the factory's source with :mod:`ast` and imports no torch. An
entry may also be given the factory object itself (user code registering at
run time).
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from cl.config.options import bind_options, describe_options

T = TypeVar("T")


def load_target(target: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _module_tree(module: str) -> ast.Module | None:
    """The parsed source of ``module`` (its parent packages are imported; they are light)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return ast.parse(Path(spec.origin).read_text())


def _find(module: str, name: str) -> tuple[ast.AST, str] | None:
    """The class or function ``name`` as defined in, or imported into, ``module``."""
    tree = _module_tree(module)
    if tree is None:
        return None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name:
            return node, module
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _find(node.module, alias.name)
    return None


def _dataclass_fields(node: ast.ClassDef, module: str) -> dict[str, str]:
    """``{field: "type = default"}`` of a dataclass definition, base-class fields first."""
    fields: dict[str, str] = {}
    for base in node.bases:
        found = _find(module, base.id) if isinstance(base, ast.Name) else None
        if found is not None and isinstance(found[0], ast.ClassDef):
            fields.update(_dataclass_fields(found[0], found[1]))
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) \
                and "ClassVar" not in ast.unparse(stmt.annotation):
            default = "" if stmt.value is None else f" = {ast.unparse(stmt.value)}"
            fields[stmt.target.id] = ast.unparse(stmt.annotation) + default
    return fields


def _options_class(node: ast.ClassDef, module: str) -> tuple[ast.ClassDef, str] | None:
    """The dataclass a class names as ``options_class = X`` (see :func:`options_schema`)."""
    for stmt in node.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign):
            targets, value = [stmt.target], stmt.value
        else:
            continue
        if isinstance(value, ast.Name) and any(
                isinstance(t, ast.Name) and t.id == "options_class" for t in targets):
            found = _find(module, value.id)
            if found is not None and isinstance(found[0], ast.ClassDef):
                return found[0], found[1]
    return None


def _signature_options(fn: ast.FunctionDef, reserved: tuple[str, ...]) -> dict[str, str] | None:
    """``{option: "type = default"}`` from a function definition's keyword parameters.

    None when the function takes ``*args``/``**kwargs`` (its options are not all written there).
    """
    args = fn.args
    if args.vararg or args.kwarg:
        return None
    defaults = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(args.args, defaults, strict=True), *zip(args.kwonlyargs, args.kw_defaults,
                                                          strict=True)]
    out = {}
    for arg, default in pairs:
        if arg.arg in ("self", "cls", *reserved):
            continue
        ann = ast.unparse(arg.annotation) if arg.annotation is not None else ""
        out[arg.arg] = ann + ("" if default is None else f" = {ast.unparse(default)}")
    return out


def describe_source(target: str, reserved: tuple[str, ...] = ()) -> tuple[str, dict[str, str]] | None:
    """First docstring line and options of ``target`` from its source, without importing it.

    Options are the keyword parameters of a function or of a class's own
    ``__init__``, or the fields of the dataclass a class names as
    ``options_class``. Returns None when the source cannot answer (an
    inherited ``__init__``, ``**kwargs``...).
    """
    module, _, attr = target.partition(":")
    found = _find(module, attr)
    if found is None:
        return None
    node, where = found
    doc = next(iter((ast.get_docstring(node) or "").strip().splitlines()), "")
    if isinstance(node, ast.ClassDef):
        options_class = _options_class(node, where)
        if options_class is not None:
            fields = _dataclass_fields(*options_class)
            return doc, {k: v for k, v in fields.items() if k not in reserved}
        node = next((n for n in node.body
                     if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if not isinstance(node, ast.FunctionDef):
        return None
    options = _signature_options(node, reserved)
    return None if options is None else (doc, options)


@dataclass
class Entry(Generic[T]):
    """One registered factory: a target to import (or the factory itself) and its description."""

    name: str
    target: str | None
    description: str = ""
    reserved: tuple[str, ...] = ()
    _factory: Callable[..., T] | None = field(default=None, repr=False)

    @property
    def factory(self) -> Callable[..., T]:
        """The factory, imported on first use."""
        if self._factory is None:
            self._factory = load_target(self.target or "")
        return self._factory

    def describe(self) -> tuple[str, dict[str, str]]:
        """Description and options, from the source when possible (no import)."""
        if self._factory is None and self.target is not None:
            found = describe_source(self.target, self.reserved)
            if found is not None:
                doc, options = found
                return self.description or doc, options
        doc = next(iter((self.factory.__doc__ or "").strip().splitlines()), "")
        return self.description or doc, describe_options(self.factory, self.reserved)


class Registry(Generic[T]):
    """A mapping from names to factories, with option validation.

    Parameters
    ----------
    kind : str
        What is registered (``"stream"``, ``"strategy"``...), for messages.
    plural : str or None
        Plural of ``kind`` for messages (default ``kind + "s"``).
    """

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or (f"{kind[:-1]}ies" if kind.endswith("y") and kind[-2:-1] not in "aeiou"
                                 else f"{kind}s")
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self,
        name: str,
        factory: str | Callable[..., T],
        *,
        description: str = "",
        reserved: tuple[str, ...] = (),
    ) -> None:
        """Register ``factory`` (a ``"module:attr"`` target, or the callable) under ``name``.

        ``reserved`` names factory parameters the library fills (never user options).
        """
        target = factory if isinstance(factory, str) else None
        if name in self._entries:
            old = self._entries[name]
            if (old.target, old._factory) != (target, None if target else factory):
                raise ValueError(f"{self.kind} {name!r} is already registered.")
            return
        self._entries[name] = Entry(name, target, description, reserved,
                                    None if target else factory)  # type: ignore[arg-type]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def available(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.available()]

    def unknown(self, name: str, extra: list[str] | None = None) -> ValueError:
        """The error for an unknown ``name``: the closest valid name and the full list."""
        names = sorted(set(self._entries) | set(extra or ()))
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return ValueError(f"Unknown {self.kind} {name!r}.{hint} "
                          f"Valid {self.plural}: {', '.join(names)}.")

    def name_of(self, factory: Any) -> str | None:
        """The registered name of ``factory`` (a class or function), found by its
        ``module:qualname`` target or identity without importing anything; None if unregistered."""
        target = f"{getattr(factory, '__module__', '')}:{getattr(factory, '__qualname__', '')}"
        for name, e in self._entries.items():
            if e.target == target or (e._factory is not None and e._factory is factory):
                return name
        return None

    def entry(self, name: str) -> Entry[T]:
        """The entry of ``name``; ``ValueError`` suggesting the closest valid name otherwise."""
        if name not in self._entries:
            raise self.unknown(name)
        return self._entries[name]

    def validate(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``options`` for ``name`` (imports the factory, builds nothing)."""
        e = self.entry(name)
        return bind_options(e.factory, options, where=f"{self.kind} {name!r}", reserved=e.reserved)

    def get(self, name: str, /, **options: Any) -> T:
        """Build ``name`` with validated ``options`` (library-reserved ones pass through)."""
        e = self.entry(name)
        user = {k: v for k, v in options.items() if k not in e.reserved}
        lib = {k: v for k, v in options.items() if k in e.reserved}
        bound = bind_options(e.factory, user, where=f"{self.kind} {name!r}", reserved=e.reserved)
        return e.factory(**bound, **lib)

    def options(self, name: str) -> dict[str, str]:
        """Documented options of ``name``."""
        return self.entry(name).describe()[1]
