"""The toy class-incremental table: PROOF, RAPF, ENGINE, CLAP4CLIP beside NMC, GDA, RanPAC,
zero-shot and continual fine-tuning, on ``toy-cil`` with ``toy-clip`` (offline, CPU, minutes).

Run from the repository root::

    python experiments/cil/toy_cil.py [--out runs/toy-cil-table] [--seed 0]

Prints a Markdown table (docs/cil.md quotes it): Avg (average incremental accuracy), Last
(average accuracy after the last task), forgetting (Chaudhry et al.), **New** = mean_j A[j, j]
(accuracy on a task's classes right after learning it, scored over all seen classes) against
**ZS new** = zero-shot CLIP's New (printed above the table), memory carried after the last task
and the exemplars kept. Every method sees each task's 200 training images (2 digits × 100) for
the epochs below; ``clip-finetune`` takes 120 steps of 32 images per task (3,840 examples,
about PROOF's 10 epochs of 272). An interrupted run resumes where it stopped (same ``--out``);
the last column sums the recorded training and evaluation seconds.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np

import strategies
import streams
from cl.core.runner import Runner
from cl.models.backbones import create_backbone

METHODS: dict[str, dict] = {
    "zeroshot": {},
    "nmc": {},
    "gda": {},
    "ranpac": {"n_components": 2000},
    "clip-finetune": {"iterations": 120, "batch_size": 32, "lr": 1e-4, "warmup": 10,
                      "encoders": "vision"},
    "proof": {"epochs": 10, "batch_size": 32, "lr": 0.01, "memory_size": 100},
    "rapf": {"epochs": 15, "batch_size": 32, "beta": 1.0, "threshold": 0.55},
    "engine": {"epochs": 10, "batch_size": 32},
    "clap4clip": {"epochs": 10, "batch_size": 32, "forward_times": 10, "memory_size": 100},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/toy-cil-table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    backbone = create_backbone("toy-clip")
    stream = streams.get("toy-cil", n_tasks=5, n_train=100, n_test=50, seed=0)
    cache = str(Path(args.out) / "cache")
    rows, zs_new = [], None
    for name in args.methods.split(","):
        out = Path(args.out) / name
        Runner(stream, strategies.get(name, **METHODS[name]), copy.deepcopy(backbone),
               out_dir=out, seed=args.seed, progress=False, cache_dir=cache).run()
        r = json.loads((out / "results.json").read_text())
        A = np.array(r["accuracy_matrix"])
        m = r["metrics"]
        exemplars = (r["records"][-1] or {}).get("exemplars", "–")
        if name == "zeroshot":
            zs_new = 100 * np.diag(A).mean()
        rows.append(f"| {name} | {100 * m['average_incremental_accuracy']:.1f} | "
                    f"{100 * m['average_accuracy']:.1f} | {100 * m['forgetting']:.1f} | "
                    f"{100 * np.diag(A).mean():.1f} | "
                    f"{r['compute'][-1]['memory_bytes'] / 1024:.0f} | {exemplars} | "
                    f"{sum(c.get('train_seconds', 0) + c.get('eval_seconds', 0) for c in r['compute']):.0f} |")
    if zs_new is not None:
        print(f"Zero-shot CLIP on the same tasks right after they arrive (ZS new): {zs_new:.1f}\n")
    print("| method | Avg | Last | forgetting | New | memory (KiB) | exemplars | train+eval s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
