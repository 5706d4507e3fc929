"""Run configuration: TOML files, command-line flags and ``--set key=value`` overrides.

A config file looks like::

    seed = 0
    backbone = "ViT-B-16:openai"
    data_root = "/data"

    [stream]
    name = "mtil"
    order = "I"

    [strategy]
    name = "gda"
    shrinkage = "ks"

    [plugins.replay]       # one table per attached plugin, with its options
    memory = 200

    [protocol]             # optional: per-task hyper-parameter search (NEVIS'22)
    hp_trials = 16

Precedence: defaults < config file < flags (``--stream``...) < ``--set``.
Every key is validated: an unknown top-level key, stream option or strategy
option is an error listing the valid ones; values are type-checked against the
factories' annotations.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from cl.config.code import fingerprint, normalize, parse
from cl.config.options import coerce, parse_value, suggest
from cl.config.problems import Problems
from cl.errors import OptionError
from cl.runtime.seeding import check_seed

#: Smallest valid value of integer top-level keys.
MINIMUM: dict[str, int] = {"batch_size": 1, "num_workers": 0}


@dataclass
class RunConfig:
    """Resolved settings of one run.

    Attributes
    ----------
    stream, strategy, backbone : str
        Registered names (or, for strategies, ``path.py:Class`` / ``module:Class``).
    stream_options, strategy_options : dict
        Factory options (validated against the factory signature).
    plugins : dict
        Plugin name → its options.
    protocol : dict
        The ``[protocol]`` table (:class:`cl.core.selection.Protocol`; empty: none).
    seed : int
    data_root, cache_dir, out : str or None
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    batch_size, num_workers : int
    skip_missing : bool
        Run only the tasks whose data is present, recording the skipped ones.
    log : list of str
        Extra loggers (``"tensorboard"``, ``"wandb"``).
    allow_large : bool
        Run counts above the size limits of :mod:`cl.config.limits` (``--allow-large``).
    """

    stream: str = "split-digits"
    stream_options: dict[str, Any] = field(default_factory=dict)
    strategy: str = "nmc"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    backbone: str = "pixels"
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    data_root: str | None = None
    cache_dir: str | None = None
    out: str | None = None
    device: str = "auto"
    batch_size: int = 256
    num_workers: int = 0
    skip_missing: bool = False
    log: list[str] = field(default_factory=list)
    allow_large: bool = False

    # -- construction ------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config",
                  problems: Problems | None = None) -> RunConfig:
        """Build from the TOML layout (``[stream]``/``[strategy]`` tables with ``name``).

        Every bad key or value is reported, not only the first: into ``problems`` when
        given (the caller raises them with more), else raised together at the end
        (:class:`~cl.config.validate.ConfigErrors` when there are several).
        """
        config = cls()
        out = problems if problems is not None else Problems()
        for key, value in data.items():
            with out.catch():
                if key in ("stream", "strategy") and isinstance(value, dict):
                    options = dict(value)
                    name = options.pop("name", None)
                    getattr(config, f"{key}_options").update(options)
                    if name is not None:
                        setattr(config, key, coerce(name, str, f"{source}: {key}.name"))
                elif key == "plugins":
                    if not isinstance(value, dict) or not all(isinstance(v, dict)
                                                              for v in value.values()):
                        raise OptionError(f"{source}: [plugins.NAME] tables expected, got {value!r}.")
                    config.plugins.update({k: dict(v) for k, v in value.items()})
                elif key == "protocol":
                    if not isinstance(value, dict):
                        raise OptionError(f"{source}: a [protocol] table expected, got {value!r}.")
                    config.protocol.update(value)
                else:
                    config.set_top(key, value, source=source)
        if problems is None:
            out.raise_if_any(source)
        return config

    @classmethod
    def from_file(cls, path: str | Path, problems: Problems | None = None) -> RunConfig:
        """Read a TOML config file; missing file or bad TOML give a clear error (bad keys and
        values: see :meth:`from_dict`)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {str(p)!r} does not exist.")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config file {str(p)!r} is not valid TOML: {err}.") from err
        return cls.from_dict(data, source=str(p), problems=problems)

    def set_top(self, key: str, value: Any, *, source: str = "--set") -> None:
        """Set a top-level key, checking the name and the type."""
        settable = [n for n in _hints() if not n.endswith("_options")
                    and n not in ("plugins", "protocol")]
        if key not in settable:
            raise ValueError(
                f"{source}: unknown config key {key!r};{suggest(key, settable)} valid keys: "
                f"{', '.join(sorted(settable))}, and the tables [stream], [strategy], "
                "[plugins.NAME], [protocol]."
            )
        value = coerce(value, _hints()[key], f"{source}: {key!r}")
        if key in MINIMUM and value < MINIMUM[key]:
            raise ValueError(f"{source}: {key!r} must be >= {MINIMUM[key]}, got {value}.")
        if key == "seed":
            check_seed(value, f"{source}: 'seed'")
        setattr(self, key, value)

    def apply_set(self, assignment: str) -> None:
        """Apply one ``--set key=value`` (``stream.X``, ``strategy.X``, ``plugins.P.X``,
        ``protocol.X`` or top-level)."""
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {assignment!r}.")
        self.set_key(key, parse_value(raw.strip()))

    def set_key(self, key: str, value: Any) -> None:
        """Set one dotted ``key`` (as :meth:`apply_set` names it) to a parsed ``value``."""
        head, _, rest = key.partition(".")
        if head in ("stream", "strategy") and rest:
            if rest == "name":
                setattr(self, head, coerce(value, str, f"--set {key}"))
            else:
                getattr(self, f"{head}_options")[rest] = value
        elif head == "plugins" and rest:
            plugin, _, option = rest.rpartition(".")  # option names have no dots; file names may
            if not plugin or not option:
                raise ValueError(f"--set {key}: use plugins.NAME.OPTION=value.")
            self.plugins.setdefault(plugin, {})[option] = value
        elif head == "protocol" and rest:
            table, _, option = rest.rpartition(".")
            target = self.protocol
            for part in table.split(".") if table else ():
                target = target.setdefault(part, {})
            target[option] = value
        elif rest:
            raise ValueError(
                f"--set {key}: unknown section {head!r};"
                f"{suggest(head, ('stream', 'strategy', 'plugins', 'protocol'))}"
                " use stream.X, strategy.X, plugins.NAME.X, protocol.X or a top-level key."
            )
        else:
            self.set_top(key, value)

    # -- user code -----------------------------------------------------------------
    def resolve_code_paths(self, bases: tuple[Path, ...] = ()) -> None:
        """Make every ``file.py:Class`` spec (strategy, plugins) absolute, looking in ``bases``
        first, then the working directory, so the run can be resumed from anywhere."""
        self.strategy = normalize(self.strategy, bases)
        plugins: dict[str, dict[str, Any]] = {}
        for name, options in self.plugins.items():
            plugins.setdefault(normalize(name, bases), {}).update(options)
        self.plugins = plugins

    def code_specs(self) -> dict[str, str]:
        """``{"strategy": spec, "plugin NAME": spec}`` of the specs that name code."""
        specs = {"strategy": self.strategy, **{f"plugin {p}": p for p in self.plugins}}
        return {role: spec for role, spec in specs.items() if parse(spec) is not None}

    def code_identity(self) -> dict[str, Any]:
        """Path and SHA-256 of each code file the config names (``{}`` when none)."""
        return {role: fingerprint(spec, role.split()[0]) for role, spec in self.code_specs().items()}

    # -- output ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """TOML layout (inverse of :meth:`from_dict`); ``None`` values are left out."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("stream_options", "strategy_options", "plugins", "protocol") or value is None:
                continue
            if f.name == "allow_large" and not value:
                continue  # written only when set, so older config.toml files read the same
            out[f.name] = value
        out["stream"] = {"name": self.stream, **self.stream_options}
        out["strategy"] = {"name": self.strategy, **self.strategy_options}
        if self.plugins:
            out["plugins"] = {k: dict(v) for k, v in self.plugins.items()}
        if self.protocol:
            out["protocol"] = dict(self.protocol)
        return out

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def identity(self) -> dict[str, Any]:
        """The settings that determine results (everything but paths and speed knobs)."""
        d = self.to_dict()
        for key in ("out", "cache_dir", "num_workers", "log", "device", "data_root", "allow_large"):
            d.pop(key, None)
        return d


@functools.cache
def _hints() -> dict[str, Any]:
    """The type hints of :class:`RunConfig`'s fields (evaluated once: a sweep sets thousands)."""
    return typing.get_type_hints(RunConfig)


def config_difference(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two config dicts, ``key: a -> b``."""
    diffs = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs.extend(config_difference(va, vb, f"{name}."))
        elif va != vb:
            diffs.append(f"{name}: {va!r} -> {vb!r}")
    return diffs
