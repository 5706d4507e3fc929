"""One invocation of ``cl sweep``: expand, skip what is finished, run the rest, report.

A rerun of the same sweep skips completed runs, resumes failed and
interrupted ones from their last checkpoint, leaves runs another process is
running alone, and starts the pending ones. The exit status is 0 when every
run has completed.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TextIO

from cl.sweep.index import read_index, run_state, write_index
from cl.sweep.progress import Progress, status_table
from cl.sweep.spec import PlannedRun, SweepSpec


def validate(runs: Sequence[PlannedRun], *, build: bool = True) -> None:
    """Check every run before anything starts; report every problem at once, naming the runs.

    First each run's config is checked from source (:func:`cl.config.validate.problems`:
    names, types, seeds, size limits; no torch, no user code); then every distinct
    run's plan is built (stream, strategy, plugins; no data, no backbone), so a value a
    constructor refuses stops the sweep too. With ``build=False`` (``--dry-run``) user
    code is parsed, never imported, as ``cl run --dry-run`` does. Runs that differ only
    by seed are checked once.
    """
    from cl.config import validate as static

    found: dict[tuple[type, str], list[str]] = {}
    distinct: dict[str, PlannedRun] = {}
    for run in runs:
        key = json.dumps({k: v for k, v in run.config.identity().items() if k != "seed"},
                         sort_keys=True, default=str)
        if key not in distinct:
            distinct[key] = run
            for err in static.problems(run.config).errors:
                found.setdefault((type(err), str(err)), []).append(run.id)
    if not found:
        from cl.config.experiment import plan

        for run in distinct.values():
            try:
                plan(replace(run.config), require=False, build=build)
            except static.CONFIG_ERRORS as err:
                found.setdefault((type(err), str(err)), []).append(run.id)
    errors = [_same_kind(kind, f"sweep run {ids[0]}" + (f" (and {len(ids) - 1} more)"
                                                         if len(ids) > 1 else "") + f": {message}")
              for (kind, message), ids in found.items()]
    problems = static.Problems()
    problems.errors = errors
    problems.raise_if_any("the sweep's runs")


def _same_kind(kind: type, message: str) -> BaseException:
    try:
        return kind(message)
    except TypeError:  # an error class with another signature
        return ValueError(message)


def describe(spec: SweepSpec, runs: Sequence[PlannedRun], out: TextIO) -> None:
    """Print the expanded runs (``cl sweep --dry-run``)."""
    print(f"sweep {spec.name}: {len(runs)} runs -> {spec.out} ({spec.executor} executor, "
          f"{spec.jobs} at a time)", file=out)
    for run in runs:
        settings = ", ".join(f"{k}={v}" for k, v in run.overrides.items()) or "(base config)"
        print(f"  {run.id}  [{run_state(run.dir).status}]  {settings}", file=out)


def status(spec: SweepSpec) -> int:
    """Print the sweep's status table (``cl sweep --status``); 0 when every run completed."""
    runs = spec.expand()
    index = read_index(spec.out, strict=True) or {}
    job_ids = {r["id"]: r.get("job_id") for r in index.get("runs", [])}
    counts = status_table(spec.name, runs, job_ids)
    return 0 if counts["completed"] == len(runs) else 1


def launch(spec: SweepSpec, *, wait: bool = True, out: TextIO | None = None) -> int:
    """Run the sweep ``spec`` describes with its executor; return the exit status.

    Parameters
    ----------
    spec : SweepSpec
        With the executor settings already resolved (config, then command-line flags).
    wait : bool
        Slurm: watch the jobs until they end (False: return after submitting).
    out : text file
        Where progress lines go (default standard output).
    """
    out = out or sys.stdout
    runs = spec.expand()
    validate(runs)
    if spec.executor == "slurm":
        from cl.sweep.slurm import SlurmOptions

        SlurmOptions.from_dict(spec.slurm).check_cluster()
    states = {r.id: run_state(r.dir).status for r in runs}
    busy = [r for r in runs if states[r.id] == "running"]
    to_run = [r for r in runs if states[r.id] not in ("completed", "running")]
    executor_info: dict[str, Any] = {"executor": spec.executor, "jobs": spec.jobs,
                                     "procs_per_run": spec.procs_per_run,
                                     "gpus_per_run": spec.gpus_per_run}
    index_path = write_index(spec.out, spec.name, str(spec.source) if spec.source else None, runs,
                             executor_info)
    progress = Progress(spec.name, runs, out)
    progress.header(len(to_run), spec.executor, spec.jobs)
    for run in busy:
        progress.line(f"{progress.prefix()} skip     {run.id}: running in another process")
    if spec.executor == "local":
        from cl.sweep.local import LocalPool, SweepStopped, stop_on_signals

        try:
            with stop_on_signals():
                LocalPool(spec.jobs, spec.procs_per_run, spec.gpus_per_run).run(to_run, progress)
        except (SweepStopped, KeyboardInterrupt) as stop:
            signum = stop.signum if isinstance(stop, SweepStopped) else int(signal.SIGINT)
            progress.line(f"sweep {spec.name}: stopped by {signal.Signals(signum).name}; its "
                          "running runs were stopped and recorded as interrupted (a rerun "
                          "resumes them)")
            progress.summary()
            return 128 + signum
    elif to_run:
        from cl.sweep import slurm

        options = slurm.SlurmOptions.from_dict(spec.slurm)
        executor_info["slurm"] = slurm.describe(options)
        jobs = slurm.submit(to_run, options, name=spec.name, folder=spec.out / "submitit",
                            jobs=spec.jobs, procs_per_run=spec.procs_per_run,
                            gpus_per_run=spec.gpus_per_run)
        write_index(spec.out, spec.name, str(spec.source) if spec.source else None, runs,
                    executor_info, {k: str(j.job_id) for k, j in jobs.items()})
        progress.line(f"submitted {len(jobs)} runs as job array "
                      f"{next(iter(jobs.values())).job_id.split('_')[0]} ({options.cluster})")
        if not wait:
            progress.line(f"follow with: cl sweep {spec.source or 'CONFIG'} --status")
            return 0
        slurm.watch(jobs, to_run, progress)
    counts = progress.summary()
    progress.line(f"index: {index_path}; compare: cl compare {spec.out}")
    return 0 if counts["completed"] == len(runs) else 1


__all__ = ["describe", "launch", "status", "validate"]
