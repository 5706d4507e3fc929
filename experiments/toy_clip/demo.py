"""Zero-shot, LoRA, CoDyRA and GDA on ``toy-mtil`` with ``toy-clip``: one command, offline.

    python experiments/toy_clip/demo.py [--out runs/toy-demo] [--threads 1]

Runs the four strategies below over the same stream, seed and backbone, then
prints and saves the MTIL table (Transfer / Average / Last, ZSCL, Zheng et al.
2023, Sec. 4.1: :func:`cl.core.metrics.mtil_summary`) side by side, the per-task
Transfer (accuracy on each task before it is trained, averaged over the rows
above the diagonal), and a figure of both. Every run directory is a normal
``cl`` run (``cl report DIR``, ``cl compare DIR ...``).

``lora`` stands in for adapting the backbone wholesale (a full fine-tune of
the image tower is another strategy): rank 32 = the vision width / 4 and twice
the LoRA default learning rate, on the image tower only. ``codyra`` runs
with its reference learning rate, rank and κ, on both towers, and the same
iterations and batch as ``lora``. See docs/toy_world.md for what the numbers
show and do not show.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

STREAM = "toy-mtil"
STREAM_OPTIONS = {"n_train": 50, "n_test": 25}
BACKBONE = "toy-clip"
SEED = 0
ITERATIONS, BATCH = 30, 32
#: run name -> (strategy, options)
RUNS: dict[str, tuple[str, dict]] = {
    "zeroshot": ("zeroshot", {}),
    "lora": ("lora", {"rank": 32, "lr": 1e-3, "encoders": "vision", "iterations": ITERATIONS,
                      "batch_size": BATCH}),
    "codyra": ("codyra", {"iterations": ITERATIONS, "batch_size": BATCH}),
    "gda": ("gda", {}),
}
COLUMNS = ("transfer", "average", "last")


def run_all(out: Path) -> dict[str, dict]:
    """Run every entry of :data:`RUNS` into ``out/<name>``; return their results.json."""
    from cl.config import RunConfig, experiment

    results = {}
    for name, (strategy, options) in RUNS.items():
        start = time.perf_counter()
        config = RunConfig(stream=STREAM, stream_options=dict(STREAM_OPTIONS), strategy=strategy,
                           strategy_options=dict(options), backbone=BACKBONE, seed=SEED,
                           device="cpu", out=str(out / name))
        results[name] = experiment.run(config, progress=False).results
        print(f"{name:9s} done in {time.perf_counter() - start:5.1f} s", flush=True)
    return results


def mtil_table(results: dict[str, dict]) -> str:
    """Markdown: one row per run, MTIL Transfer / Average / Last in percent."""
    from cl.core.metrics import mtil_summary

    lines = ["| method | Transfer | Average | Last |", "|---|---:|---:|---:|"]
    for name, res in results.items():
        m = mtil_summary(np.asarray(res["accuracy_matrix"], dtype=float))
        lines.append(f"| {name} | " + " | ".join(f"{100 * m[c]:.1f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def per_task_transfer(A: np.ndarray) -> np.ndarray:
    """``mean_{t<j} A[t, j]`` for every task j >= 1 (NaN for task 0): the terms of MTIL Transfer."""
    return np.array([np.nan] + [float(np.mean(A[:j, j])) for j in range(1, A.shape[1])])


def per_task_table(results: dict[str, dict]) -> str:
    """Markdown: zero-shot row and per-task Transfer of every run, in percent."""
    first = next(iter(results.values()))
    tasks = first["tasks"]
    lines = ["| | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    zero = np.asarray(first["zero_shot"], dtype=float)
    lines.append("| zero-shot row | " + " | ".join(f"{100 * v:.0f}" for v in zero) + " |")
    for name, res in results.items():
        values = per_task_transfer(np.asarray(res["accuracy_matrix"], dtype=float))
        lines.append(f"| {name} transfer | " + " | ".join(
            "–" if np.isnan(v) else f"{100 * v:.0f}" for v in values) + " |")
    return "\n".join(lines)


def plot(results: dict[str, dict], path: Path) -> Path:
    """Grouped bars of Transfer / Average / Last per run, and per-task Transfer per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cl.core.metrics import mtil_summary
    from cl.runtime.io import atomic_write

    fig, (bars, lines) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 1.4]})
    names = list(results)
    x = np.arange(len(COLUMNS))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        m = mtil_summary(np.asarray(results[name]["accuracy_matrix"], dtype=float))
        bars.bar(x + (i - (len(names) - 1) / 2) * width, [100 * m[c] for c in COLUMNS], width,
                 label=name, color=f"C{i}")
    bars.set_xticks(x, ["Transfer", "Average", "Last"])
    bars.set_ylabel("accuracy (%)")
    bars.set_title(f"MTIL metrics, {STREAM} on {BACKBONE}")
    bars.legend(fontsize=8)
    # per-task Transfer: the domains are categories, so bars side by side (a line between two
    # domains would mean nothing, and coinciding lines would hide one method behind another)
    first = next(iter(results.values()))
    tasks = first["tasks"]
    positions = np.arange(len(tasks))
    for i, name in enumerate(names):
        A = np.asarray(results[name]["accuracy_matrix"], dtype=float)
        lines.bar(positions + (i - (len(names) - 1) / 2) * width, 100 * per_task_transfer(A),
                  width, label=name, color=f"C{i}")
    chance = [100 / len(c) for c in first["class_names"]]
    lines.scatter(positions, chance, marker="_", s=900, color="black", linewidths=1.5,
                  label="chance", zorder=3)
    lines.set_xticks(positions, [f"{t}\n(trained first)" if j == 0 else t
                                 for j, t in enumerate(tasks)], rotation=30, ha="right",
                     fontsize=8)
    lines.set_ylim(0, 113)  # room for the legend above 100 %
    lines.set_yticks(range(0, 101, 20))
    lines.set_ylabel("accuracy before training the task (%)")
    lines.set_title("per-task Transfer (mean over the rows before the task is trained)")
    lines.legend(fontsize=8, ncols=len(names) + 1, loc="upper center")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, lambda fh: fh.write(buf.getvalue()))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of the four runs (default runs/toy-demo-<time>)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or Path("runs") / f"toy-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    start = time.perf_counter()
    results = run_all(out)
    table, tasks = mtil_table(results), per_task_table(results)
    figure = plot(results, out / "mtil.png")
    report = f"{table}\n\n{tasks}\n"
    (out / "mtil.md").write_text(report)
    (out / "mtil.json").write_text(json.dumps(
        {n: r["metrics"] for n, r in results.items()}, indent=2) + "\n")
    print(f"\n{report}\nwall time {time.perf_counter() - start:.0f} s; table {out / 'mtil.md'}, "
          f"figure {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
