"""The ``[sweep]`` table of a config: grids and lists over config keys, expanded into runs.

A sweep config is a run config (every key ``cl run`` takes) plus a ``[sweep]``
table::

    [sweep]
    name = "digits-heads"          # sweep directory runs/sweeps/<name> (default: file stem)
    seeds = [0, 1, 2]              # shorthand for grid key "seed"
    jobs = 2                       # local: processes at once; slurm: array parallelism

    [sweep.grid]                   # every combination (dotted keys as --set names them)
    "strategy.shrinkage" = [0.1, 0.3]
    "stream.n_tasks" = [2, 5]

    [[sweep.runs]]                 # a list of settings, each combined with the grid
    "strategy.name" = "gda"
    [[sweep.runs]]
    "strategy.name" = "nmc"

    [sweep.slurm]                  # the submitit executor (see cl.sweep.slurm)
    partition = "gpu"
    timeout_min = 120

Runs are ``[[sweep.runs]] × grid`` in declared order. A key is any key ``--set``
accepts (``seed``, ``stream.X``, ``strategy.X``, ``plugins.P.X``, ``protocol.X``,
``stream.name``, ``strategy.name``). Changing ``strategy.name`` (or
``stream.name``) away from the base config's drops the base's options of that
table, which belong to the other strategy (stream).

Each run gets a deterministic directory ``<sweep dir>/<slug>-<hash>``: the slug
names its overrides (``gda_shrinkage-0.3_seed-1``), the hash is the first 8 hex
digits of SHA-256 over its resolved settings (:meth:`RunConfig.identity`), so
the same sweep maps to the same directories on every invocation and a changed
base config maps to new ones. File specs (``my_strategy.py:Cls``) are resolved to
absolute paths first, so the identity a rerun computes is the one its runs stored.
Two runs of one identity, a key spelled twice, a ``name`` that is a path and a
grid above :data:`cl.config.limits.MAX_RUNS` runs are refused; expansion is linear
in the number of runs.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cl.config import RunConfig, limits
from cl.config.options import coerce, suggest
from cl.config.problems import Problems
from cl.errors import OptionError

SETTINGS: dict[str, Any] = {
    "name": str, "out": str, "seeds": list[int], "jobs": int, "executor": str,
    "procs_per_run": int, "gpus_per_run": int, "grid": dict, "runs": list, "slurm": dict,
}
EXECUTORS: tuple[str, ...] = ("local", "slurm")


def _flatten(table: dict[str, Any], prefix: str = "", where: str = "[sweep]") -> dict[str, Any]:
    """``{"strategy": {"lr": 1}}`` → ``{"strategy.lr": 1}`` (unquoted TOML dotted keys).

    Two spellings of one key (``"strategy.lr"`` and ``strategy.lr``) are refused: TOML
    keeps both, and one of them would be silently dropped.
    """
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        items = _flatten(value, f"{name}.", where) if isinstance(value, dict) else {name: value}
        for full, item in items.items():
            if full in out:
                raise ValueError(f"{where} sets {full!r} twice (once quoted, \"{full}\", once as a "
                                 "dotted key); keep one spelling.")
            out[full] = item
    return out


def check_name(name: str, where: str) -> str:
    """``name`` when it is a plain name (a directory under runs/sweeps), else ``ValueError``."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or Path(name).is_absolute():
        raise ValueError(f"{where} name must be a plain name (it becomes runs/sweeps/NAME), not a "
                         f"path; got {name!r}. Choose the directory with [sweep] out or --out.")
    return name


def _slug(overrides: dict[str, Any]) -> str:
    parts = []
    for key, value in overrides.items():
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        short = key.rsplit(".", 1)[-1]
        parts.append(text if short == "name" else f"{short}-{text}")
    slug = re.sub(r"[^A-Za-z0-9._=+-]+", "-", "_".join(parts)).strip("-_") or "run"
    return slug[:60].rstrip("-_")


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep.

    Attributes
    ----------
    id : str
        ``<slug>-<hash8>``: the run directory's name inside the sweep directory.
    overrides : dict
        The dotted keys the sweep sets for this run, in declared order.
    config : RunConfig
        The resolved settings (``out`` is the run directory).
    """

    id: str
    overrides: dict[str, Any]
    config: RunConfig

    @property
    def dir(self) -> Path:
        return Path(self.config.out or self.id)


@dataclass
class SweepSpec:
    """A parsed sweep config: the base run config and the ``[sweep]`` settings.

    Attributes
    ----------
    base : RunConfig
    name : str
    out : Path
        The sweep directory (runs, index, logs).
    grid : dict of str to list
    runs : list of dict
    jobs, procs_per_run, gpus_per_run : int
    executor : {"local", "slurm"}
    slurm : dict
        Options of :class:`cl.sweep.slurm.SlurmOptions`.
    source : Path or None
        The config file.
    """

    base: RunConfig
    name: str
    out: Path
    grid: dict[str, list[Any]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    jobs: int = 1
    executor: str = "local"
    procs_per_run: int = 1
    gpus_per_run: int = 0
    slurm: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> SweepSpec:
        """Read a sweep config; missing file, bad TOML or a missing ``[sweep]`` table are errors."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"sweep config {str(p)!r} does not exist.")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"sweep config {str(p)!r} is not valid TOML: {err}.") from err
        if "sweep" not in data:
            raise ValueError(f"{str(p)!r} has no [sweep] table; add one with [sweep.grid] or "
                             "[[sweep.runs]] (see docs/workflow.md), or use cl run for one run.")
        return cls.from_dict(data, source=p)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: Path | None = None) -> SweepSpec:
        """Build from the TOML layout: run-config keys plus the ``[sweep]`` table.

        Every problem of the ``[sweep]`` table and the base config is reported at once
        (:class:`~cl.config.validate.ConfigErrors` when there are several).
        """
        data = dict(data)
        table = data.pop("sweep", {})
        where = f"{source or 'config'}: [sweep]"
        if not isinstance(table, dict):
            raise TypeError(f"{source or 'config'}: 'sweep' must be a table ([sweep]), got {table!r}.")
        problems = Problems()
        values: dict[str, Any] = {}
        for key, value in table.items():
            with problems.catch():
                if key not in SETTINGS:
                    raise ValueError(f"{where} has no key {key!r};{suggest(key, SETTINGS)} valid "
                                     f"keys: {', '.join(SETTINGS)}.")
                values[key] = coerce(value, SETTINGS[key], f"{where} {key!r}")
        grid: dict[str, list[Any]] = {}
        with problems.catch():
            grid = _flatten(values.pop("grid", {}), where=f"{where}.grid")
        for key, options in grid.items():
            with problems.catch():
                if not isinstance(options, list) or not options:
                    raise ValueError(f"{where}.grid {key!r} must be a non-empty list of values, "
                                     f"got {options!r}.")
        runs: list[dict[str, Any]] = []
        for i, entry in enumerate(values.pop("runs", [])):
            with problems.catch():
                if not isinstance(entry, dict):
                    raise OptionError(f"{where}: runs[{i}] is {entry!r}; [[sweep.runs]] entries "
                                      "must be tables of KEY = value (write [[sweep.runs]] blocks).")
                runs.append(_flatten(entry, where=f"{where} runs[{i}]"))
        seeds = values.pop("seeds", None)
        with problems.catch():
            if seeds is not None:
                if "seed" in grid:
                    raise ValueError(f"{where}: give seeds either as 'seeds' or as grid key 'seed'.")
                grid["seed"] = list(seeds)
        clash = sorted({k for r in runs for k in r} & set(grid))
        if clash:
            problems.errors.append(ValueError(
                f"{where}: {clash[0]!r} is both in [[sweep.runs]] and [sweep.grid]; set it in one "
                "place."))
        executor = values.pop("executor", "local")
        if executor not in EXECUTORS:
            problems.errors.append(ValueError(
                f"{where} executor must be one of {list(EXECUTORS)}, got {executor!r}."))
            executor = "local"
        for key in ("jobs", "procs_per_run"):
            if values.get(key, 1) < 1:
                problems.errors.append(ValueError(f"{where} {key} must be >= 1, got {values[key]}."))
        if values.get("gpus_per_run", 0) < 0:
            problems.errors.append(ValueError(
                f"{where} gpus_per_run must be >= 0, got {values['gpus_per_run']}."))
        name = values.pop("name", None) or (source.stem if source else "sweep")
        with problems.catch():
            check_name(name, where)
        out = Path(values.pop("out", None) or Path("runs") / "sweeps" / name)
        base = RunConfig.from_dict(data, source=str(source or "config"), problems=problems)
        problems.raise_if_any(str(source or "config"))
        base.resolve_code_paths()  # stored absolute: a rerun from this directory resumes
        return cls(base=base, name=name, out=out, grid=grid, runs=runs, executor=executor,
                   source=source, **values)

    @property
    def size(self) -> int:
        """How many runs :meth:`expand` makes (computed without expanding)."""
        return len(self.runs or [{}]) * math.prod(len(v) for v in self.grid.values())

    def expand(self) -> list[PlannedRun]:
        """Every run, in ``[[sweep.runs]] × grid`` order, with its directory under :attr:`out`.

        Raises
        ------
        ValueError
            A key ``--set`` does not accept, or two runs with the same settings.
        """
        limits.check_runs(self.size, f"sweep {self.name!r}", self.base.allow_large)
        planned: list[PlannedRun] = []
        seen: dict[str, dict[str, Any]] = {}
        for entry in self.runs or [{}]:
            for values in itertools.product(*self.grid.values()):
                overrides = {**entry, **dict(zip(self.grid, values, strict=True))}
                config = self._resolve(overrides)
                identity = json.dumps(config.identity(), sort_keys=True, default=str)
                digest = hashlib.sha256(identity.encode()).hexdigest()
                run_id = f"{_slug(overrides)}-{digest[:8]}"
                if digest in seen:
                    raise ValueError(
                        f"sweep {self.name!r} expands to identical runs ({seen[digest]} and "
                        f"{overrides} give the same settings: keys such as out, device, "
                        "num_workers or data_root do not change a run's results); remove the "
                        "repeated values from [sweep.grid] / [[sweep.runs]].")
                seen[digest] = overrides
                config.out = str(self.out / run_id)
                planned.append(PlannedRun(run_id, overrides, config))
        return planned

    def _resolve(self, overrides: dict[str, Any]) -> RunConfig:
        config = copy.deepcopy(self.base)
        for table in ("strategy", "stream"):
            name = overrides.get(f"{table}.name")
            if name is not None and name != getattr(config, table):
                getattr(config, f"{table}_options").clear()
        for key, value in overrides.items():
            config.set_key(key, value)
        if any(k == "strategy.name" or k.startswith("plugins.") for k in overrides):
            config.resolve_code_paths()
        return config


__all__ = ["EXECUTORS", "PlannedRun", "SweepSpec", "check_name"]
