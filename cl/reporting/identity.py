"""Run identity: which run directories are the same run, so a comparison counts each once.

A run's identity is its *resolved* config without paths and speed knobs, its seed and
its code fingerprint:

- the config (``results.json``'s ``config``) with every option the user left out filled
  with its factory's default (registered streams, strategies and plugins, read from their
  source by :meth:`cl.config.registry.Registry.options`, importing no torch), so
  ``stream.n_tasks=5`` and the default 5 are one run;
- without :data:`IGNORED` (``out``, ``cache_dir``, ``data_root``,
  ``num_workers``, ``device``, ``log``): where a run is written, read from or computed
  does not make it another experiment;
- the seed (``config.seed``, kept exactly: :func:`cl.runtime.seeding.check_seed`);
- the code: the ``cl`` git commit (``environment.git_commit``) and the SHA-256 of every
  user code file the config names (``results.json``'s ``code``).

Two directories with one identity (a copy, a sweep grid over ``out``) are one run. A run
written from Python without a config is identified by its directory only.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cl.reporting.runs import RunSummary

#: config keys that do not change what a run computes (paths, speed knobs)
IGNORED: tuple[str, ...] = ("out", "cache_dir", "num_workers", "log", "device", "data_root")


@cache
def _defaults(kind: str, name: str) -> tuple[tuple[str, Any], ...]:
    """Literal defaults of a registered stream/strategy/plugin's options (none when unknown)."""
    import strategies
    import streams

    registry = {"stream": streams.STREAMS, "strategy": strategies.STRATEGIES,
                "plugin": strategies.PLUGINS}[kind]
    if name not in registry:
        return ()
    try:
        options = registry.options(name)
    except (ImportError, ValueError, TypeError, SyntaxError):
        return ()
    out = []
    for option, text in options.items():
        _, sep, default = text.partition(" = ")
        if not sep:
            continue
        try:
            out.append((option, ast.literal_eval(default)))
        except (ValueError, SyntaxError):
            continue
    return tuple(out)


def resolved_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (TOML layout) with the defaults of the options it leaves out filled in."""
    resolved = json.loads(json.dumps(config, default=str))
    for kind in ("stream", "strategy"):
        table = resolved.get(kind)
        if isinstance(table, dict) and isinstance(table.get("name"), str):
            for option, default in _defaults(kind, table["name"]):
                table.setdefault(option, default)
    for name, options in (resolved.get("plugins") or {}).items():
        if isinstance(options, dict):
            for option, default in _defaults("plugin", name):
                options.setdefault(option, default)
    return json.loads(json.dumps(resolved, default=list))  # tuples as lists


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict of dotted keys (``{"stream": {"n_tasks": 5}}`` →
    ``{"stream.n_tasks": 5}``)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def code_fingerprint(results: dict[str, Any]) -> dict[str, Any]:
    """The code a run ran: ``cl``'s git commit and its user code files' SHA-256."""
    return {"cl": (results.get("environment") or {}).get("git_commit"),
            "user": results.get("code") or {}}


def run_identity(run: RunSummary) -> str:
    """A digest of (resolved config without :data:`IGNORED` keys, seed, code fingerprint);
    for a run without a config, of its resolved directory."""
    if run.config is None:
        key: Any = {"path": str(run.path.resolve())}
    else:
        config = {k: v for k, v in resolved_config(run.config).items() if k not in IGNORED}
        key = {"config": config, "seed": run.seed, "code": run.code}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Duplicate:
    """A run left out of a comparison because another one given is the same run.

    Attributes
    ----------
    run : RunSummary
        The one left out.
    kept : RunSummary
        The one counted.
    reason : str
        ``"the same directory"`` or ``"the same config, seed and code"``.
    """

    run: RunSummary
    kept: RunSummary
    reason: str


def deduplicate(runs: Sequence[RunSummary]) -> tuple[list[RunSummary], list[Duplicate]]:
    """Keep the first run of each identity (:func:`run_identity`), in order; return the kept
    runs and the duplicates dropped."""
    kept: list[RunSummary] = []
    dropped: list[Duplicate] = []
    by_path: dict[str, RunSummary] = {}
    by_identity: dict[str, RunSummary] = {}
    for run in runs:
        path = str(run.path.resolve())
        if path in by_path:
            dropped.append(Duplicate(run, by_path[path], "the same directory"))
            continue
        by_path[path] = run
        identity = run_identity(run)
        if identity in by_identity:
            dropped.append(Duplicate(run, by_identity[identity], "the same config, seed and code"))
            continue
        by_identity[identity] = run
        kept.append(run)
    return kept, dropped


__all__ = ["IGNORED", "Duplicate", "code_fingerprint", "deduplicate", "flatten",
           "resolved_config", "run_identity"]
