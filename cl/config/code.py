"""User code named by a config: where a spec points, what it may name, and its fingerprint.

A config (or ``--strategy``, ``--plugin``) may name code as ``path/to/file.py:Class``
or ``package.module:Class``. A config file can come from someone else (a run
directory handed over, resumed or exported), so it must not be able to make
``cl`` call arbitrary code, such as ``os:system`` with ``command = "..."``:

1. the source is located *without importing anything* (a file path, or the
   module's ``.py`` file found on ``sys.path`` by :class:`importlib.machinery.PathFinder`);
2. the source is parsed with :mod:`ast`: a syntax error is reported as
   ``file:line``, and the name must be bound at the module's top level by a
   ``class`` statement (or an import or assignment, for re-exports); a
   function, a missing name, or a module without Python source is refused;
3. only then is the module imported, and the object must be a *class* that
   subclasses :class:`cl.Strategy` (or :class:`cl.Plugin`), checked by the
   caller (:mod:`strategies.loading`) before it is called.

``--dry-run`` stops after step 2: it checks option names and simple types from
the class's ``__init__`` source (:func:`static_options`) and imports nothing.
File specs are stored resolved to absolute paths (:func:`normalize`), and
:func:`fingerprint` records each file's SHA-256, so a run can be resumed from
any working directory and a changed file is noticed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

#: Modules imported from user files are named ``cl_user_code.<stem>_<hash>``.
USER_MODULE_PREFIX = "cl_user_code."
AVALANCHE_PREFIX = "avalanche:"


@dataclass(frozen=True)
class CodeSpec:
    """A parsed ``file.py:Class`` or ``module:Class`` spec.

    Attributes
    ----------
    spec : str
        As written.
    target : str
        The file path or the dotted module name.
    attr : str
        The class name.
    kind : {"file", "module"}
    """

    spec: str
    target: str
    attr: str
    kind: Literal["file", "module"]


def parse(spec: str) -> CodeSpec | None:
    """The code spec ``spec`` names, or ``None`` for a registered/entry-point name or ``avalanche:``."""
    if spec.startswith(AVALANCHE_PREFIX):
        return None
    target, sep, attr = spec.rpartition(":")
    if not (sep and target and attr):
        return None
    is_file = target.endswith(".py") or "/" in target or "\\" in target
    return CodeSpec(spec, target, attr, "file" if is_file else "module")


def normalize(spec: str, bases: tuple[Path, ...] = ()) -> str:
    """``spec`` with a file path made absolute (first of ``bases`` where it exists, else the
    working directory); other specs unchanged."""
    code = parse(spec)
    if code is None or code.kind != "file":
        return spec
    path = Path(code.target).expanduser()
    if not path.is_absolute():
        found = [b / path for b in bases if (b / path).is_file()]
        path = found[0] if found else Path.cwd() / path
    return f"{path.resolve()}:{code.attr}"


def source_path(code: CodeSpec, kind: str = "strategy") -> Path:
    """The ``.py`` file ``code`` points to, located without importing anything.

    Raises
    ------
    FileNotFoundError
        A file spec whose file does not exist.
    ValueError
        A module that cannot be found, or has no Python source (builtin, compiled).
    """
    if code.kind == "file":
        file = Path(code.target).expanduser()
        if not file.is_file():
            raise FileNotFoundError(
                f"{kind} file {code.target!r} does not exist (looked at {file.resolve()}); "
                "give a path to a .py file, e.g. 'experiments/examples/ridge_strategy.py:RidgeStrategy'."
            )
        return file.resolve()
    origin = _module_origin(code.target)
    if origin is None:
        raise ValueError(
            f"cannot import module {code.target!r}: it is not on sys.path (is the package "
            "installed or on PYTHONPATH?). For a file, write 'path/to/file.py:ClassName'."
        )
    if not origin.endswith(".py"):
        raise ValueError(
            f"module {code.target!r} has no Python source ({origin}); a config may only name "
            "a class defined in Python source, as 'package.module:ClassName'."
        )
    return Path(origin)


def _module_origin(name: str) -> str | None:
    """The origin (file) of module ``name``, found without executing any module."""
    path = None
    origin = None
    parts = name.split(".")
    for i in range(len(parts)):
        full = ".".join(parts[: i + 1])
        module = sys.modules.get(full)
        if module is not None:
            origin = getattr(module, "__file__", None) or getattr(module.__spec__, "origin", None)
            path = getattr(module, "__path__", None)
        else:
            try:
                spec = importlib.machinery.PathFinder.find_spec(full, path)
            except (ImportError, ValueError):
                spec = None
            if spec is None:
                return None
            origin, path = spec.origin, spec.submodule_search_locations
        if i < len(parts) - 1 and path is None:
            return None  # a plain module has no submodules
    return None if origin is None else str(origin)


def check_source(file: Path, attr: str, spec: str, kind: str = "strategy") -> ast.ClassDef | None:
    """Parse ``file`` and check that it binds ``attr`` at top level, as a class or a re-export.

    Returns
    -------
    ast.ClassDef or None
        The class statement, or ``None`` for a name bound by an import or assignment
        (checked once imported).

    Raises
    ------
    ValueError
        A syntax error (``file:line``), or ``attr`` not bound, or bound by a ``def``.
    """
    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except SyntaxError as err:
        raise ValueError(f"{file}:{err.lineno}: syntax error in {kind} code {spec!r}: "
                         f"{err.msg}.") from None
    classes: list[str] = []
    for node in _top_level(tree.body):
        if isinstance(node, ast.ClassDef):
            classes.append(node.name)
            if node.name == attr:
                return node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == attr:
            raise ValueError(
                f"{spec!r} names the function {attr}() in {file}; a config may only name a "
                f"class that subclasses cl.{kind.capitalize()}, so that it never calls other code."
            )
        elif attr in _bound_names(node):
            return None
    raise ValueError(
        f"{file} defines no {attr!r} class ({kind} {spec!r}; a config may only name a class "
        f"that subclasses cl.{kind.capitalize()}); classes defined there: "
        f"{', '.join(c for c in classes if not c.startswith('_')) or '(none)'}."
    )


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements executed at import: the body, and the bodies of top-level if/try/with."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If):
            out += _top_level(node.body) + _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += _top_level(node.body) + _top_level(node.orelse) + _top_level(node.finalbody)
            for handler in node.handlers:
                out += _top_level(handler.body)
        elif isinstance(node, ast.With):
            out += _top_level(node.body)
    return out


def _bound_names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    return set()


def static_options(node: ast.ClassDef) -> dict[str, Any] | None:
    """``{option: annotation}`` from the class's own ``__init__`` source, or ``None`` when the
    source cannot say (inherited ``__init__``, ``**kwargs``). Annotations understood: ``int``,
    ``float``, ``bool``, ``str``, ``list[...]``, ``tuple[...]``, ``Literal[...]``, ``X | None``,
    ``Optional[X]``; any other is ``Any``."""
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
                None)
    if init is None or init.args.kwarg is not None:
        return None
    params = init.args.posonlyargs[1:] + init.args.args[1:] if init.args.posonlyargs \
        else init.args.args[1:]
    return {a.arg: _annotation(a.annotation) for a in [*params, *init.args.kwonlyargs]}


_SIMPLE: dict[str, Any] = {"int": int, "float": float, "bool": bool, "str": str}


def _annotation(node: ast.expr | None) -> Any:
    """The annotation object for a source annotation, without evaluating any code."""
    import typing

    if node is None:
        return Any
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        try:
            return _annotation(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return Any
    if isinstance(node, ast.Constant) and node.value is None:
        return type(None)
    if isinstance(node, ast.Name):
        return _SIMPLE.get(node.id, Any)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _annotation(node.left), _annotation(node.right)
        return Any if Any in (left, right) else left | right
    if isinstance(node, ast.Subscript):
        head = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(
            node.value, "id", "")
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "Literal":
            try:
                return typing.Literal[tuple(ast.literal_eval(a) for a in args)]
            except ValueError:
                return Any
        if head == "Optional":
            inner = _annotation(args[0])
            return Any if inner is Any else inner | None
        if head in ("list", "List", "Sequence"):
            return list[_annotation(args[0])]
        if head in ("tuple", "Tuple"):
            return tuple[_annotation(args[0]), ...]
    return Any


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fingerprint(spec: str, kind: str = "strategy") -> dict[str, str] | None:
    """``{"spec", "path", "sha256"}`` of the source a code spec names; ``None`` for other specs."""
    code = parse(spec)
    if code is None:
        return None
    path = source_path(code, kind)
    return {"spec": spec, "path": str(path), "sha256": sha256_file(path)}


def import_file(file: Path, attr: str, spec: str) -> Any:
    """Import ``file`` as a fresh module (one per path and content) and return ``attr``.

    An exception raised while the file runs is re-raised as ``ValueError`` naming
    ``file:line`` and the error.
    """
    digest = hashlib.sha1(f"{file}:{sha256_file(file)}".encode()).hexdigest()[:12]
    name = f"{USER_MODULE_PREFIX}{file.stem}_{digest}"
    module = sys.modules.get(name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(name, file)
        if loader_spec is None or loader_spec.loader is None:
            raise ValueError(f"cannot import {str(file)!r} as a Python module; is it a .py file?")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up here
        try:
            loader_spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[name]
            line = next((f.lineno for f in reversed(traceback.extract_tb(err.__traceback__))
                         if f.filename == str(file)), None)
            raise ValueError(f"{file}:{line}: importing {spec!r} failed: "
                             f"{type(err).__name__}: {err}") from err
        except BaseException:
            del sys.modules[name]
            raise
    return getattr(module, attr)


def announce(specs: dict[str, str], run_dir: Path) -> list[str]:
    """One line per code spec a run directory's config will import: the file, its SHA-256,
    and whether it lies outside ``run_dir``. Specs are checked first (:func:`check_source`),
    so a refused one raises before anything is announced or imported."""
    lines = []
    root = run_dir.resolve()
    for role, spec in specs.items():
        code = parse(spec)
        if code is None:
            continue
        kind = role.split()[0]
        path = source_path(code, kind)
        check_source(path, code.attr, spec, kind)
        where = "inside" if path.is_relative_to(root) else "OUTSIDE"
        lines.append(f"{run_dir}/config.toml: {role} {spec!r} imports {path} "
                     f"(sha256 {sha256_file(path)[:16]}, {where} the run directory)")
    return lines
