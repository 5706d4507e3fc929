"""Research workflow at scale, measured side by side in one run.

1. ``cl sweep`` of a 2×2 grid (finetune on split-digits, ``strategy.epochs`` × seed)
   with the local executor at ``--jobs 1`` and at ``--jobs 2``: wall time of the
   whole sweep, its ratio, and the peak resident memory of the largest run process.
2. The NEVIS'22 protocol: the same finetune run with ``protocol.hp_trials=1`` and
   ``=4`` (in this process): wall time, ``train_flops`` and ``examples_seen`` per
   task and their ratios (the compute of every trial is the task's: 4 trials
   should cost 4× the training compute of one).
3. The fixed cost of a run: ``cl run`` (the quickstart: nmc on pixels, split-digits)
   and ``cl run --dry-run`` as fresh processes, wall and CPU seconds (median of
   ``--reps``), and with ``--baseline DIR`` the same commands on another checkout
   (``PYTHONPATH=DIR``), interleaved so that load changes hit both alike. Beside them,
   the floor: a process that only imports the libraries the quickstart uses (torch for
   the runner, scikit-learn for the NMC estimator and the digits, matplotlib for the
   figures), and the largest speed-up over the baseline that any change inside cl could
   give (baseline ÷ floor).

Usage::

    python experiments/benchmarks/bench_workflow.py
    python experiments/benchmarks/bench_workflow.py --epochs 10 --tasks 5
    git worktree add --detach /tmp/base fa9d858
    python experiments/benchmarks/bench_workflow.py --only startup --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = """
[stream]
name = "split-digits"
n_tasks = {tasks}

[strategy]
name = "finetune"

[sweep]
out = "{out}"
seeds = [0, 1]

[sweep.grid]
"strategy.epochs" = [{epochs}, {epochs_plus}]
"""


def sweep_seconds(root: Path, jobs: int, tasks: int, epochs: int) -> float:
    """Wall time of a fresh 2×2 sweep with ``jobs`` processes at once."""
    config = root / f"jobs{jobs}.toml"
    config.write_text(SWEEP.format(tasks=tasks, out=root / f"sweep-{jobs}", epochs=epochs,
                                   epochs_plus=epochs + 1))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cl", "sweep", str(config), "--jobs", str(jobs)],
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"sweep --jobs {jobs} failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def protocol_run(root: Path, trials: int, tasks: int, epochs: int) -> tuple[float, dict]:
    """Wall time and results of a finetune run with ``trials`` hyper-parameter trials per task."""
    from cl.cli import main

    out = root / f"hp{trials}-epochs{epochs}"
    start = time.perf_counter()
    code = main(["run", "--strategy", "finetune", "--set", f"strategy.epochs={epochs}",
                 "--set", f"stream.n_tasks={tasks}", "--set", f"protocol.hp_trials={trials}",
                 "--out", str(out), "--no-progress"])
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"protocol run with {trials} trials failed")
    return seconds, json.loads((out / "results.json").read_text())


ROOT = Path(__file__).resolve().parents[2]


#: what every quickstart process imports whatever cl does: the floor of its fixed cost
FLOOR_IMPORTS = "import torch, sklearn.base, sklearn.datasets, matplotlib.figure"


def process_seconds(code_dir: Path, argv: list[str], cache: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of ``python -m cl *argv`` run from ``code_dir``
    with an empty feature cache ``cache`` (a first run); ``argv = ["-c", CODE]`` runs
    ``python -c CODE`` instead."""
    env = {**os.environ, "PYTHONPATH": str(code_dir), "MPLBACKEND": "Agg",
           "CL_CACHE_DIR": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    command = [sys.executable, *argv] if argv[:1] == ["-c"] else [sys.executable, "-m", "cl", *argv]
    done = subprocess.run(command, env=env, capture_output=True,
                          text=True, check=False, cwd=cache.parent)  # not a checkout: `-m` puts
    # the working directory first on sys.path, before PYTHONPATH
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"cl {' '.join(argv)} failed ({code_dir}):\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def startup(root: Path, baseline: Path | None, reps: int) -> None:
    """``cl run`` and ``cl run --dry-run`` as processes, this checkout against ``baseline``."""
    trees = {"this checkout": ROOT, **({f"baseline {baseline}": baseline} if baseline else {})}
    commands = {"cl run (quickstart)": ["run", "--no-progress"],
                "cl run --dry-run": ["run", "--dry-run"]}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    floor: list[tuple[float, float]] = []
    for rep in range(reps):
        for command, argv in commands.items():
            for tree, path in trees.items():
                out = root / f"startup-{sum(map(len, times.values()))}"
                out.mkdir()
                times.setdefault((command, tree), []).append(
                    process_seconds(path, [*argv, "--out", str(out / "run")], out / "cache"))
        out = root / f"floor-{rep}"
        out.mkdir()
        floor.append(process_seconds(ROOT, ["-c", FLOOR_IMPORTS], out / "cache"))
    wall_floor = statistics.median(w for w, _ in floor)
    cpu_floor = statistics.median(c for _, c in floor)
    print(f"fixed cost of a run, fresh processes, median of {reps} (interleaved):")
    for command in commands:
        medians = {}
        for tree in trees:
            runs = times[(command, tree)]
            medians[tree] = (statistics.median(w for w, _ in runs),
                             statistics.median(c for _, c in runs))
            print(f"  {command:<22} {tree:<40} wall {medians[tree][0]:6.2f} s   CPU "
                  f"{medians[tree][1]:6.2f} s")
        if baseline:
            (w0, c0), (w1, c1) = medians[f"baseline {baseline}"], medians["this checkout"]
            print(f"  {'':<22} {'speed-up':<40} wall {w0 / w1:6.2f}x   CPU {c0 / c1:6.2f}x")
    print(f"  floor: python -c {FLOOR_IMPORTS!r}\n  {'':<22} {'':<40} wall {wall_floor:6.2f} s   "
          f"CPU {cpu_floor:6.2f} s")
    if baseline:
        quickstart = times[("cl run (quickstart)", f"baseline {baseline}")]
        w0, c0 = statistics.median(w for w, _ in quickstart), statistics.median(c for _, c in quickstart)
        print(f"  largest quickstart speed-up any change inside cl can give (baseline / floor): "
              f"wall {w0 / wall_floor:.2f}x   CPU {c0 / cpu_floor:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2, help="split-digits tasks (divides 10)")
    parser.add_argument("--epochs", type=int, default=5, help="finetune epochs per task")
    parser.add_argument("--only", choices=("sweep", "startup"), help="run one part only")
    parser.add_argument("--baseline", type=Path, help="another checkout to time cl run against")
    parser.add_argument("--reps", type=int, default=5, help="processes per startup measurement")
    args = parser.parse_args()
    if args.only != "sweep":
        with tempfile.TemporaryDirectory() as tmp:
            startup(Path(tmp), args.baseline, args.reps)
    if args.only == "startup":
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one = sweep_seconds(root, 1, args.tasks, args.epochs)
        two = sweep_seconds(root, 2, args.tasks, args.epochs)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # largest child
        print(f"sweep 2x2 ({args.tasks} tasks, finetune {args.epochs}/{args.epochs + 1} epochs × "
              f"seeds 0, 1), local executor:")
        print(f"  --jobs 1: {one:6.1f} s   --jobs 2: {two:6.1f} s   speed-up {one / two:.2f}x   "
              f"peak RSS of the largest process (the sweep itself or a run) {peak:.0f} MiB")
        protocol_run(root, 1, args.tasks, 1)  # warm imports and caches before timing
        t1, r1 = protocol_run(root, 1, args.tasks, args.epochs)
        t4, r4 = protocol_run(root, 4, args.tasks, args.epochs)
        print(f"NEVIS'22 protocol, finetune {args.epochs} epochs, {args.tasks} tasks:")
        print(f"  hp_trials=1: {t1:6.1f} s   hp_trials=4: {t4:6.1f} s   ratio {t4 / t1:.2f}x")
        for t, (c1, c4) in enumerate(zip(r1["compute"], r4["compute"], strict=True)):
            print(f"  task {t}: train_flops {c1['train_flops']:.4g} -> {c4['train_flops']:.4g} "
                  f"({c4['train_flops'] / c1['train_flops']:.3f}x), examples_seen "
                  f"{c1['examples_seen']:.0f} -> {c4['examples_seen']:.0f} "
                  f"({c4['examples_seen'] / c1['examples_seen']:.3f}x), train_seconds "
                  f"{c1['train_seconds']:.2f} -> {c4['train_seconds']:.2f}")
        print(f"  peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
