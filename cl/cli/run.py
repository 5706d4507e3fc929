"""``cl run``: run (or resume) an experiment."""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from pathlib import Path

from cl.config import RunConfig, validate
from cl.config.code import announce
from cl.config.problems import Problems
from cl.errors import ResourceError
from cl.runtime.seeding import check_seed


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="run an experiment (default: split-digits, pixels, nmc — offline)",
        description="Run a strategy over a stream. Precedence: defaults < --config < flags < --set.")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--stream", help="stream name (cl list streams)")
    p.add_argument("--strategy", help="strategy name, path/to/file.py:Class or module:Class")
    p.add_argument("--backbone", help="backbone spec (cl list backbones)")
    p.add_argument("--plugin", action="append", default=[], metavar="NAME",
                   help="attach a plugin (repeatable; options with --set plugins.NAME.KEY=V)")
    p.add_argument("--data-root", help="directory holding datasets")
    p.add_argument("--cache-dir", help="feature cache directory (default $CL_CACHE_DIR or user cache)")
    p.add_argument("--out", help="run directory (default runs/<stream>-<strategy>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR with its config")
    p.add_argument("--seed", type=int, help="run seed")
    p.add_argument("--seeds", metavar="S,S,...",
                   help="run the config once per seed, into OUT/seed-S (then: cl compare OUT)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--skip-missing", action="store_true",
                   help="run only the tasks whose data is present, recording the skipped ones")
    p.add_argument("--log", metavar="NAMES", help="extra loggers, comma-separated: tensorboard,wandb")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting: seed=1, stream.n_tasks=5, strategy.lr=0.1")
    p.add_argument("--allow-large", action="store_true",
                   help="run counts above the size limits (docs/workflow.md 'Size limits')")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan, run nothing")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=handle)


def resolve_config(args: argparse.Namespace, problems: Problems | None = None) -> RunConfig:
    """Config from --resume/--config, then flags, then --set.

    Every bad key, flag or ``--set`` goes into ``problems`` when given (the caller
    raises them together); without it they are raised together here.
    """
    out = problems if problems is not None else Problems()
    if args.resume:
        path = Path(args.resume) / "config.toml"
        if not path.is_file():
            raise FileNotFoundError(f"--resume {args.resume!r}: no config.toml there; not a run directory.")
        config = RunConfig.from_file(path, out)
        config.out = args.resume
        config.resolve_code_paths((Path(args.resume),))
        for line in announce(config.code_specs(), Path(args.resume)):
            print(f"cl run: note: {line}", file=sys.stderr)
    else:
        config = RunConfig.from_file(args.config, out) if args.config else RunConfig()
    for flag in ("stream", "strategy", "backbone", "data_root", "cache_dir", "out", "seed", "device"):
        value = getattr(args, flag)
        if value is not None:
            with out.catch():
                config.set_top(flag, value, source=f"--{flag.replace('_', '-')}")
    if args.skip_missing:
        config.skip_missing = True
    if getattr(args, "allow_large", False):
        config.allow_large = True
    if args.log:
        config.log = [name.strip() for name in args.log.split(",") if name.strip()]
    for name in args.plugin:
        config.plugins.setdefault(name, {})
    for assignment in args.set:
        with out.catch():
            config.apply_set(assignment)
    if problems is None:
        out.raise_if_any(args.config or "the command line")
    return config


def is_allocation_failure(err: BaseException) -> bool:
    """Whether ``err`` is Python's or torch's (CPU or CUDA) failure to allocate memory."""
    text = str(err).lower()
    return isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or (
        isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text))


def handle(args: argparse.Namespace) -> int:
    problems = Problems()
    config = resolve_config(args, problems)
    validate.problems(config, problems)  # every mistake at once, from source, before torch
    problems.raise_if_any(args.config or args.resume or "the command line")

    from cl.config import experiment
    from cl.reporting import report
    from cl.runtime import distributed
    device = distributed.init_from_env()
    if device is not None:
        config.device = str(device)
    seeds = parse_seeds(args.seeds) if args.seeds else None
    if seeds is not None and (args.resume or args.seed is not None):
        raise ValueError("--seeds runs one directory per seed; it cannot be combined with --seed "
                         "or --resume (resume one seed with --resume OUT/seed-S).")
    configs = [config] if seeds is None else per_seed(config, seeds, experiment.default_out)
    if args.dry_run:
        for c in configs:
            print(experiment.plan(c, require=False, build=False).describe())
        return 0
    for c in configs:
        try:
            result = experiment.run(c, progress=not args.no_progress)
        except Exception as err:
            if not is_allocation_failure(err):
                raise
            options = " ".join(f"strategy.{k}={v!r}" for k, v in c.strategy_options.items())
            raise ResourceError(
                f"out of memory ({str(err).strip().splitlines()[0][:160]}); the run asked for more "
                f"memory than this machine has. Lower the sizes in its settings: batch_size="
                f"{c.batch_size}" + (f", {options}" if options else "") + "."
            ) from err
        if distributed.is_main():
            report.print_results(result.results)
            print(f"run directory: {result.out_dir}")
    if seeds is not None and distributed.is_main():
        from cl.reporting.compare import compare

        base = Path(configs[0].out).parent
        print(compare([base]), end="")
        print(f"runs: {base} (aggregate again with: cl compare {base})")
    return 0


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``; distinct integers, else ``ValueError``."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise ValueError(f"--seeds expects comma-separated integers, e.g. 0,1,2; got {text!r}.") from err
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds expects distinct integers, e.g. 0,1,2; got {text!r}.")
    for seed in seeds:
        check_seed(seed, "--seeds")
    return seeds


def per_seed(config: RunConfig, seeds: list[int],
             default_out: Callable[[RunConfig], Path]) -> list[RunConfig]:
    """One config per seed, run directory ``OUT/seed-S`` (``OUT``: --out or the default)."""
    base = Path(config.out) if config.out else default_out(config)
    out = []
    for seed in seeds:
        c = copy.deepcopy(config)
        c.seed, c.out = seed, str(base / f"seed-{seed}")
        out.append(c)
    return out
