"""Build a run from a :class:`~cl.config.run_config.RunConfig`: stream, strategy, backbone, plugins."""

from __future__ import annotations

import re
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

import strategies
import streams
from cl.config import RunConfig
from cl.core.plugin import Plugin
from cl.core.runner import Runner, RunResult
from cl.core.selection import Protocol
from cl.core.strategy import Strategy
from cl.models.backbones import Backbone, create_backbone
from cl.reporting.loggers import make_loggers
from cl.runtime import distributed
from cl.runtime.lock import RunLock
from streams.availability import check_data, drop_missing, require_data
from streams.core import Stream


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as torch parses it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available; use --set device=cpu.")
    return device


def default_out(config: RunConfig) -> Path:
    """``runs/<stream>-<strategy>-<timestamp>``."""
    strategy = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(config.strategy).name)
    return Path("runs") / f"{config.stream}-{strategy}-{time.strftime('%Y%m%d-%H%M%S')}"


#: ``stream.class_order_seed`` value that makes the class order follow the run seed
RUN_SEED = "run"


def stream_options(config: RunConfig) -> dict[str, Any]:
    """The stream options of ``config``, with ``class_order_seed = "run"`` replaced by the run
    seed (the class-incremental convention of reporting over several class orders: each seed
    draws its own order)."""
    options = dict(config.stream_options)
    if options.get("class_order_seed") == RUN_SEED:
        options["class_order_seed"] = config.seed
    return options


def build_stream(config: RunConfig) -> Stream:
    """The configured stream (``data_root`` passed to streams that load files)."""
    entry = streams.STREAMS.entry(config.stream)
    extra: dict[str, Any] = {}
    if "data_root" in entry.reserved:
        extra["data_root"] = config.data_root
    return streams.get(config.stream, **stream_options(config), **extra)


def build_plugins(config: RunConfig) -> list[Plugin]:
    """The configured plugins, in config order (registered names, entry points, or code
    given as ``path.py:Class`` / ``module:Class``)."""
    from strategies.loading import build_plugin

    return [build_plugin(name, **options) for name, options in config.plugins.items()]


@dataclass
class Plan:
    """Everything a run needs, built but not started (with ``build=False``: checked, not built;
    ``strategy`` is then None and ``checks`` says how each spec was checked)."""

    config: RunConfig
    stream: Stream
    strategy: Strategy | None
    plugins: list[Plugin]
    out_dir: Path
    device: torch.device
    extra_results: dict[str, Any]
    protocol: Protocol
    checks: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """Human-readable plan (``cl run --dry-run``), with each task's data availability."""
        availability = {a.task: a for a in check_data(self.stream)}
        lines = [
            f"stream    {self.stream.name} ({len(self.stream)} tasks, {self.stream.scenario})",
            f"strategy  {self.config.strategy} {self.config.strategy_options or ''}".rstrip(),
            f"backbone  {self.config.backbone}",
            f"plugins   {', '.join(self.config.plugins) or '(none)'}",
            f"protocol  {self.protocol.hp_trials} hp trials per task" if self.protocol.active
            else "protocol  (none)",
            f"seed      {self.config.seed}   device {self.device}   out {self.out_dir}",
            *[f"checked   {role}: {how}" for role, how in self.checks.items()],
            "tasks:",
        ]
        for i, task in enumerate(self.stream):
            year = f" ({task.year})" if task.year is not None and str(task.year) not in task.name else ""
            where = task.metadata.get("expected_path")
            state = "" if availability[task.name].available else "  [MISSING]"
            classes = f"{task.n_classes} classes" if task.n_classes_known else "classes from data"
            if task.kind == "image-text":
                classes = "image-text" + ("" if task.metadata.get("trained", True) else ", evaluated only")
            lines.append(f"  {i:3d}  {task.name}{year}  ({classes})"
                         + (f"  data: {where}" if where else "") + state)
        skipped = self.extra_results.get("skipped_tasks")
        if skipped:
            lines.append(f"skipped (no data): {', '.join(skipped)}")
        return "\n".join(lines)


def plan(config: RunConfig, *, require: bool = True, build: bool = True) -> Plan:
    """Validate ``config`` and build stream, strategy and plugins (no backbone, no data).

    File specs in ``config`` are made absolute first. With ``config.skip_missing``
    the tasks without data are dropped and recorded (``skipped_tasks``);
    otherwise, when ``require`` is true, missing data is an error listing every
    missing task and where it is expected. With ``build=False`` (``--dry-run``)
    the strategy and plugins are checked but not built, and user code is parsed,
    not imported (:func:`strategies.loading.check_spec`).
    """
    config.resolve_code_paths()
    stream = build_stream(config)
    extra: dict[str, Any] = {}
    if "class_order" in stream.metadata:  # the order used, whatever chose it
        extra["class_order"] = [int(c) for c in stream.metadata["class_order"]]
    if config.skip_missing:
        stream, extra["skipped_tasks"] = drop_missing(stream)
    elif require:
        require_data(stream)
    checks: dict[str, str] = {}
    protocol = Protocol.from_dict(config.protocol)
    if build:
        extra_strategy = {}
        if config.strategy in strategies.STRATEGIES and \
                "data_root" in strategies.STRATEGIES.entry(config.strategy).reserved:
            extra_strategy["data_root"] = config.data_root  # e.g. zscl's reference set
        strategy: Strategy | None = strategies.get(config.strategy, **config.strategy_options,
                                                   **extra_strategy)
        if protocol.active:
            protocol.space(strategy, config.strategy)  # a strategy without searchable options fails
        plugins = build_plugins(config)
    else:
        from strategies.loading import check_spec

        strategy, plugins = None, []
        checks["strategy"] = check_spec(config.strategy, config.strategy_options)
        for name, options in config.plugins.items():
            checks[f"plugin {name}"] = check_spec(name, options, "plugin")
    out_dir = Path(config.out) if config.out else default_out(config)
    out_dir = Path(distributed.broadcast_object(str(out_dir)))  # one run dir for all ranks
    return Plan(config, stream, strategy, plugins, out_dir, resolve_device(config.device), extra,
                protocol, checks)


def run(config: RunConfig, *, progress: bool = True, backbone: Backbone | None = None) -> RunResult:
    """Build and run the experiment ``config`` describes (resuming its run directory)."""
    p = plan(config)
    config.out = str(p.out_dir)
    if backbone is None:
        backbone = create_backbone(config.backbone, device=p.device)
    # the image transform is part of a run's protocol (cl compare): recorded as written
    p.extra_results["image_transform"] = re.sub(r" at 0x[0-9a-fA-F]+", "",
                                                repr(getattr(backbone, "preprocess", None)))
    with RunLock(p.out_dir) if distributed.is_main() else nullcontext():  # before loggers write
        loggers = make_loggers(config.log, p.out_dir, config.to_dict()) if distributed.is_main() \
            else []
        runner = Runner(
            p.stream, cast(Strategy, p.strategy), backbone, out_dir=p.out_dir, seed=config.seed,
            device=p.device, batch_size=config.batch_size, num_workers=config.num_workers,
            cache_dir=config.cache_dir, plugins=p.plugins, progress=progress, config=config,
            loggers=loggers, extra_results=p.extra_results, protocol=p.protocol,
        )
        return runner.run()
