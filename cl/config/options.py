"""Validate user options (config files, ``--set``) against a callable's signature.

Strategies, streams and backbones are built by factories whose keyword
parameters *are* the option schema: an unknown key, or a value of the wrong
type, is rejected here with a message naming the key, the expected type and
the valid keys, long before anything reaches torch.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import math
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from cl.errors import OptionError

#: TOML has no null: for options that accept ``None`` these strings mean ``None``.
NONE_WORDS: tuple[str, ...] = ("none", "None", "null")


def parse_value(text: str) -> Any:
    """Parse one ``--set`` value as a TOML literal, falling back to a bare string.

    ``"5" -> 5``, ``"0.1" -> 0.1``, ``"true" -> True``, ``"[1, 2]" -> [1, 2]``,
    ``"cosine" -> "cosine"``.
    """
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def suggest(name: str, valid: collections.abc.Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` for the valid name closest to ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` converted to ``annotation``, or raise :class:`~cl.errors.OptionError`
    (a ``TypeError``) naming ``where``.

    Supports ``int``, ``float``, ``bool``, ``str``, ``Literal``, ``X | None`` (where
    ``"none"``/``"null"`` give ``None``, since TOML cannot write null),
    unions, ``list[X]``/``tuple[X, ...]`` and ``Any`` (anything goes). A ``float``
    must be finite: NaN and infinities are refused, naming ``where``.
    """
    if annotation is inspect.Parameter.empty or annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        if value in args:
            return value
        raise OptionError(f"{where} must be one of {list(args)}, got {value!r}.")
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or value in NONE_WORDS):
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except OptionError as err:
                errors.append(str(err))
        finite = [e for e in errors if "finite" in e]
        if finite:
            raise OptionError(finite[0])
        expected = " | ".join(_type_name(a) for a in args)
        raise OptionError(f"{where} expects {expected}, got {value!r} ({type(value).__name__}).")
    if origin in (list, tuple, collections.abc.Sequence):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise OptionError(f"{where} expects a list, got {value!r}.")
        inner = args[0] if args else Any
        items = [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise OptionError(f"{where} expects true or false, got {value!r}.")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise OptionError(f"{where} expects an integer, got {value!r}.")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise OptionError(f"{where} must be a finite number, got {value!r}.")
            return float(value)
        raise OptionError(f"{where} expects a number, got {value!r}.")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise OptionError(f"{where} expects a string, got {value!r}.")
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    if isinstance(annotation, type):
        raise OptionError(f"{where} expects {annotation.__name__}, got {value!r}.")
    return value


def bind_options(
    factory: Callable[..., Any],
    options: Mapping[str, Any],
    *,
    where: str,
    reserved: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Check ``options`` against ``factory``'s keyword parameters and coerce their types.

    Parameters
    ----------
    factory : callable
        Class or function whose signature defines the valid options.
    options : mapping
        User-given options (from TOML or ``--set``).
    where : str
        Prefix for error messages, e.g. ``"strategy 'nmc'"``.
    reserved : tuple of str
        Parameter names filled by the library, not by users (e.g. ``data_root``).

    Returns
    -------
    dict
        Options with values coerced to the annotated types.

    Raises
    ------
    ValueError
        Unknown option (the message lists the valid ones).
    OptionError
        Value of the wrong type (a ``TypeError``).
    """
    params, hints, accepts_kwargs = options_schema(factory)
    params = {name: p for name, p in params.items() if name not in reserved}
    bound: dict[str, Any] = {}
    for key, value in options.items():
        if key not in params:
            if accepts_kwargs:
                bound[key] = value
                continue
            valid = ", ".join(sorted(params)) or "(none)"
            raise ValueError(f"{where} has no option {key!r};{suggest(key, params)} "
                             f"valid options: {valid}.")
        annotation = hints.get(key, params[key].annotation)
        bound[key] = coerce(value, annotation, f"{where} option {key!r}")
    return bound


def options_schema(
    factory: Callable[..., Any],
) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """The option parameters of ``factory``, their type hints, and whether it takes ``**kwargs``.

    A factory with an ``options_class`` attribute (a dataclass, as
    :class:`strategies.lora.config.LoraOptions`) takes that dataclass's fields as
    its options; any other factory, its keyword parameters.
    """
    options_class = getattr(factory, "options_class", None)
    if options_class is not None and dataclasses.is_dataclass(options_class):
        target: Callable[..., Any] = options_class
        hint_source: Any = options_class
    else:
        target = factory
        hint_source = factory.__init__ if inspect.isclass(factory) else factory
    sig = inspect.signature(target)
    try:
        hints = typing.get_type_hints(hint_source)
    except (NameError, TypeError):  # unresolved forward references: use raw annotations
        hints = {}
    params = {name: p for name, p in sig.parameters.items()
              if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return params, hints, accepts_kwargs


def describe_options(factory: Callable[..., Any], reserved: tuple[str, ...] = ()) -> dict[str, str]:
    """``{option: "type = default"}`` for help texts and ``cl list``."""
    params, hints, _ = options_schema(factory)
    out = {}
    for name, p in params.items():
        if name in reserved:
            continue
        annotation = hints.get(name, p.annotation)
        ann = "" if annotation is p.empty else (
            annotation.__name__ if isinstance(annotation, type) else str(annotation)
        ).replace("typing.", "")
        default = "" if p.default is p.empty else f" = {p.default!r}"
        out[name] = f"{ann}{default}"
    return out
