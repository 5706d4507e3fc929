"""Analytic heads at NEVIS scale: incremental ``partial_fit`` vs refitting from scratch, side by side.

The synthetic stream of ``bench_training_free.py`` (``--tasks`` 100 tasks of
``--classes`` 10 new classes, ``--train`` 200 features per class, D = ``--dim``
512, so 1,000 classes at the end). For each head, in one run:

* **incremental**: one ``partial_fit`` per task on that task's features;
* **refit**: a fresh estimator ``fit`` on all data seen so far after every task
  (the data sit in one preallocated array, so no copying is timed).

Heads: ``ranpac`` (RanPAC, ``--ranpac-m`` random features, λ chosen per task),
``fecam`` (per-class covariances), ``fecam-lowrank`` (rank 16), ``klda``
(``--klda-m`` random Fourier features), ``rail`` (primal, ``--rail-m``).
Refitting takes far too long on a shared CPU, so as in
``bench_training_free.py`` each refit baseline runs task after task for
``--budget`` seconds, then only after ``--samples`` evenly spaced later tasks
(the last included); totals marked ``~`` interpolate its per-task seconds
linearly in the task index between measured tasks. Peak memory is
``tracemalloc``'s peak of Python and NumPy allocations during the task's
(re)fit, the statistics already held included. Agreement is the fraction of
equal predictions of incremental and refit models on held-out features of all
classes after the last task (for ranpac the refit uses the incremental run's
last λ, since λ is chosen per task).

**Whole runs** (``--cli``, on by default): ``cl run`` as a process with each strategy's
*default* options, side by side: ``ranpac`` (M = 10,000) against ``nmc`` on
``split-digits`` (wall-time ratio, goal ≤ 3×; peak RSS, goal ≤ 1.5 GB) and ``rail``
(M = 15,000, float64) against ``nmc`` on ``toy-xtail`` with ``toy-clip`` (peak RSS, goal
≤ 2.5 GB). Wall time and peak RSS are the child process's own (``os.wait4``); each run
writes its run directory under a temporary directory, whose size is printed too.

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python experiments/benchmarks/bench_analytic.py
    python experiments/benchmarks/bench_analytic.py --tasks 10 --budget 10 --heads fecam klda

``--test`` defaults to 3 held-out features per class (3,000 at the end): scoring
1,000 per-class Mahalanobis distances costs C·D² per sample.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training_free import SyntheticStream, Timing, make_stream

from strategies.estimators.fecam import FeCAM
from strategies.estimators.klda import KLDA
from strategies.estimators.rail import RAIL
from strategies.estimators.ranpac import RanPAC


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, int]:
    """Result, seconds and tracemalloc peak bytes of ``fn(*args)``."""
    tracemalloc.reset_peak()
    start = time.perf_counter()
    out = fn(*args)
    seconds = time.perf_counter() - start
    return out, seconds, tracemalloc.get_traced_memory()[1]


def run_incremental(model: Any, stream: SyntheticStream, tasks: int) -> tuple[Timing, list[int]]:
    timing, peaks = Timing(), []
    for t in range(tasks):
        X, y = stream.task(t)
        _, timing.seconds[t], peak = timed(model.partial_fit, X, y)
        peaks.append(peak)
    timing.predictions[tasks - 1] = model.predict(stream.test_seen(tasks - 1)[0])
    return timing, peaks


def run_refit(make: Callable[[], Any], stream: SyntheticStream, tasks: int, budget: float,
              samples: int) -> tuple[Timing, list[int]]:
    timing, peaks = Timing(), []
    model = None

    def refit(X: np.ndarray, y: np.ndarray) -> Any:
        return make().fit(X, y)

    for t in range(tasks):
        if sum(timing.seconds.values()) > budget:
            break
        X, y = stream.seen(t)
        model, timing.seconds[t], peak = timed(refit, X, y)
        peaks.append(peak)
    k = timing.prefix
    later = np.unique(np.linspace(tasks - 1, k, samples).round().astype(int)) if k < tasks else []
    for t in later:
        X, y = stream.seen(int(t))
        model, timing.seconds[int(t)], peak = timed(refit, X, y)
        peaks.append(peak)
    timing.predictions[tasks - 1] = model.predict(stream.test_seen(tasks - 1)[0])
    return timing, peaks


CLI_RUNS: tuple[tuple[str, ...], ...] = (
    ("--strategy", "nmc"),
    ("--strategy", "ranpac"),
    ("--stream", "toy-xtail", "--backbone", "toy-clip", "--strategy", "nmc"),
    ("--stream", "toy-xtail", "--backbone", "toy-clip", "--strategy", "rail"),
)


def cl_run(args: tuple[str, ...], root: Path) -> tuple[float, int, int]:
    """Wall seconds, peak RSS bytes and run-directory bytes of ``cl run ARGS`` as a process."""
    out = root / "-".join(a.lstrip("-") for a in args)
    env = dict(os.environ, CL_CACHE_DIR=str(root / "cache"))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cl", "run", *args, "--out", str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"cl run {' '.join(args)} failed: {proc.stderr.read().decode()[-2000:]}")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return seconds, usage.ru_maxrss * 1024, size


def compare_cli_runs() -> None:
    """Print the whole-run comparison of the module docstring (defaults of each strategy)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for args in CLI_RUNS[:1]:  # warm the feature cache so no run pays extraction alone
            cl_run(args, root / "warm")
        rows = {args: cl_run(args, root) for args in CLI_RUNS}
    for (a, b) in ((CLI_RUNS[1], CLI_RUNS[0]), (CLI_RUNS[3], CLI_RUNS[2])):
        (wa, ra, da), (wb, rb, _) = rows[a], rows[b]
        print(f"cl run {' '.join(a):<62} {wa:6.1f} s, peak RSS {ra / 2**30:4.2f} GiB, run dir "
              f"{da / 2**20:6.1f} MiB | vs {b[-1]}: {wb:5.1f} s, {rb / 2**30:4.2f} GiB -> "
              f"{wa / wb:4.2f}x wall", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--test", type=int, default=3)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--separation", type=float, default=0.12)
    parser.add_argument("--ranpac-m", type=int, default=2000)
    parser.add_argument("--klda-m", type=int, default=2000)
    parser.add_argument("--rail-m", type=int, default=2000)
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--heads", nargs="+",
                        default=["fecam", "fecam-lowrank", "klda", "ranpac", "rail"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cli", action=argparse.BooleanOptionalAction, default=True,
                        help="also time whole `cl run` processes with default options")
    args = parser.parse_args()
    if args.cli:
        compare_cli_runs()
    T = args.tasks
    stream = make_stream(T, args.classes, args.train, args.test, args.dim, args.separation, args.seed)
    print(f"stream: {T} tasks x {stream.per_task} features, D={args.dim}, {T * args.classes} classes")
    factories: dict[str, Callable[[], Any]] = {
        "fecam": lambda: FeCAM(memory_limit_gb=20.0),
        "fecam-lowrank": lambda: FeCAM(covariance="lowrank"),
        "klda": lambda: KLDA(n_components=args.klda_m, gamma=1.0 / args.dim),  # fixed γ: refit = incremental
        "ranpac": lambda: RanPAC(n_components=args.ranpac_m),
        "rail": lambda: RAIL(n_components=args.rail_m),
    }
    tracemalloc.start()
    y_test = stream.test_seen(T - 1)[1]
    for name in args.heads:
        start = time.perf_counter()
        model = factories[name]()
        inc, inc_peaks = run_incremental(model, stream, T)
        make = factories[name]
        if name == "ranpac":
            make = partial(RanPAC, n_components=args.ranpac_m, alpha=model.alpha_)
        del model  # the refit runs without the incremental model's memory
        ref, ref_peaks = run_refit(make, stream, T, args.budget, args.samples)
        k = ref.prefix
        line = (f"{name:<14} incremental {T} tasks {inc.at(T):7.1f} s, peak {max(inc_peaks) / 1e9:5.2f} GB"
                f" | refit first {k} tasks {ref.at(k):6.1f} s vs {inc.at(k):5.1f} s -> "
                f"{ref.at(k) / inc.at(k):5.1f}x")
        if k < T:
            line += (f" | all {T} ~{ref.total(T):6.0f} s -> ~{ref.total(T) / inc.at(T):4.0f}x")
        agree = np.mean(inc.predictions[T - 1] == ref.predictions[T - 1])
        acc = np.mean(inc.predictions[T - 1] == y_test)
        print(line + f" | refit peak {max(ref_peaks) / 1e9:5.2f} GB | agreement {agree:.4f}"
              f" | accuracy {acc:.3f} | last task {inc.seconds[T - 1]:.2f} s vs "
              f"{ref.seconds[T - 1]:.2f} s | wall {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
