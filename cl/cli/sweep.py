"""``cl sweep CONFIG``: expand a config's ``[sweep]`` table into runs and run them."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep", help="run a grid of runs from a config's [sweep] table (local or Slurm)",
        description="Expand the [sweep] table of CONFIG (grids and lists over any config key, "
                    "seeds) into runs with deterministic directories and an index, and run them: "
                    "local processes (--jobs N) or a Slurm job array through submitit. A rerun "
                    "skips finished runs and resumes interrupted ones. Flags override [sweep].")
    p.add_argument("config", help="TOML config with a [sweep] table")
    p.add_argument("--out", help="sweep directory (default [sweep] out, or runs/sweeps/<name>)")
    p.add_argument("--jobs", type=int, help="local: processes at once; slurm: array parallelism")
    p.add_argument("--executor", choices=["local", "slurm"], help="where runs go (default local)")
    p.add_argument("--procs-per-run", type=int,
                   help="torchrun processes per run (> 1: each run is a multi-GPU torchrun run)")
    p.add_argument("--gpus-per-run", type=int, help="GPUs per run (Slurm gpus_per_node)")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--timeout-min", type=int, help="Slurm time limit per job, minutes")
    p.add_argument("--cluster", choices=["slurm", "local", "debug"],
                   help="submitit backend of --executor slurm (local/debug: this machine)")
    p.add_argument("--no-wait", action="store_true",
                   help="slurm: return after submitting (follow with --status)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base setting of every run, e.g. data_root=/data")
    p.add_argument("--allow-large", action="store_true",
                   help="run a grid or counts above the size limits (docs/workflow.md 'Size limits')")
    p.add_argument("--dry-run", action="store_true",
                   help="check and list the runs and their state; run nothing, import no user code")
    p.add_argument("--status", action="store_true", help="print every run's state, run nothing")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    import sys

    from cl.config.problems import Problems
    from cl.sweep.launch import describe, launch, status, validate
    from cl.sweep.spec import SweepSpec

    spec = SweepSpec.from_file(args.config)
    problems = Problems()
    for assignment in args.set:
        with problems.catch():
            spec.base.apply_set(assignment)
    if args.allow_large:
        spec.base.allow_large = True
    for flag in ("jobs", "procs_per_run", "gpus_per_run"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "gpus_per_run" else 1):
            problems.errors.append(ValueError(
                f"--{flag.replace('_', '-')} must be >= {0 if flag == 'gpus_per_run' else 1}, "
                f"got {value}."))
    problems.raise_if_any("the command line")
    spec.base.resolve_code_paths()
    for flag in ("jobs", "executor", "procs_per_run", "gpus_per_run"):
        if getattr(args, flag) is not None:
            setattr(spec, flag, getattr(args, flag))
    if args.out:
        spec.out = Path(args.out)
    if spec.out.exists() and not spec.out.is_dir():
        raise ValueError(f"sweep directory {str(spec.out)!r} exists and is not a directory; "
                              "choose another --out (or [sweep] out).")
    for flag, key in (("partition", "partition"), ("timeout_min", "timeout_min"),
                      ("cluster", "cluster")):
        if getattr(args, flag) is not None:
            spec.slurm[key] = getattr(args, flag)
    if args.status:
        return status(spec)
    if args.dry_run:
        runs = spec.expand()
        validate(runs, build=False)
        describe(spec, runs, sys.stdout)
        return 0
    return launch(spec, wait=not args.no_wait)
