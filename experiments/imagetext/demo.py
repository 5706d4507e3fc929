"""Continual vision-language pre-training offline: does contrastive fine-tuning forget retrieval?

Runs ``contrastive-ft``, ``er-contrastive``, ``mod-x`` and ``ctp`` on ``toy-captions``
(the toy world's image-caption pairs, one task per domain) from the pretrained
``toy-clip``, with the same optimiser, steps and batches, then prints a Markdown table
of the retrieval metrics (mean recall: R@1, 5, 10 in both directions) and draws the
mean-recall matrix of each strategy side by side. Expected (Mod-X, CTP): sequential
contrastive fine-tuning forgets retrieval on earlier phases; Mod-X and CTP forget less.
The script reports what it measures, whatever it is.

    python experiments/imagetext/demo.py                  # about 7 minutes on 1 busy CPU core
    python experiments/imagetext/demo.py --iterations 20  # quicker; too few steps to forget much
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

STRATEGIES: dict[str, dict[str, object]] = {
    "contrastive-ft": {},
    "er-contrastive": {"memory": 64},
    "mod-x": {"alpha": 20.0},
    # the table in docs/imagetext.md was measured with CLIP's learned logit scale, the ctp
    # default before it became CTP's fixed τ = 0.07
    "ctp": {"queue_size": 256, "contrastive_temperature": None},
}


def run_all(out: Path, *, backbone: str, iterations: int, batch_size: int, lr: float,
            seed: int) -> dict[str, dict]:
    """Run every strategy of :data:`STRATEGIES`; return ``{name: results.json dict}``."""
    import strategies
    import streams
    from cl import Runner, create_backbone

    results = {}
    for name, extra in STRATEGIES.items():
        start = time.perf_counter()
        stream = streams.get("toy-captions")
        strategy = strategies.get(name, iterations=iterations, batch_size=batch_size, lr=lr,
                                  warmup=0.1, weight_decay=0.1, **extra)
        run = Runner(stream, strategy, create_backbone(backbone), out_dir=out / name, seed=seed,
                     progress=False).run()
        results[name] = run.results
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    return results


def table(results: dict[str, dict]) -> str:
    """Markdown table of the retrieval metrics per strategy (percent)."""
    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}"

    lines = [("| strategy | mean recall, final | avg incremental | forgetting | BWT | "
             "i→t R@1 final | t→i R@1 final | i→t R@1 BWT |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, res in results.items():
        m, i2t, t2i = (res["score_metrics"][k] for k in ("mean_recall", "i2t_recall@1",
                                                          "t2i_recall@1"))
        lines.append(f"| {name} | {pct(m['average_accuracy'])} | "
                     f"{pct(m['average_incremental_accuracy'])} | {pct(m['forgetting'])} | "
                     f"{pct(m['backward_transfer'])} | {pct(i2t['average_accuracy'])} | "
                     f"{pct(t2i['average_accuracy'])} | {pct(i2t['backward_transfer'])} |")
    zero = next(iter(results.values()))["zero_shot_scores"]["mean_recall"]
    tasks = next(iter(results.values()))["tasks"]
    lines.append("")
    lines.append("Before training (toy-clip, mean recall): "
                 + ", ".join(f"{t} {pct(z)}" for t, z in zip(tasks, zero, strict=True)) + ".")
    return "\n".join(lines)


def figure(results: dict[str, dict], path: Path) -> Path:
    """The mean-recall matrix of every strategy, side by side (rows: after task t)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cl.core.results import matrix_from_json

    fig, axes = plt.subplots(1, len(results), figsize=(3.6 * len(results) + 1, 4.2),
                             layout="constrained")
    for k, (ax, (name, res)) in enumerate(zip(axes, results.items(), strict=True)):
        A = matrix_from_json(res["scores"]["mean_recall"])
        im = ax.imshow(A * 100, vmin=0, vmax=100, cmap="viridis")
        T = len(res["tasks"])
        ax.set_xticks(range(T), res["tasks"], rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(T), res["tasks"] if k == 0 else [""] * T, fontsize=8)
        for t in range(T):
            for j in range(T):
                ax.text(j, t, f"{100 * A[t, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if A[t, j] < 0.6 else "black")
        ax.set_title(name)
        ax.set_xlabel("evaluated task j")
    axes[0].set_ylabel("after training task t")
    fig.colorbar(im, ax=list(axes), label="mean recall (%)", shrink=0.8)
    fig.suptitle("toy-captions · toy-clip: mean recall (R@1, 5, 10, both directions)")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/imagetext-demo", help="run directories and figure")
    parser.add_argument("--backbone", default="toy-clip")
    parser.add_argument("--iterations", type=int, default=60, help="optimiser steps per task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    start = time.perf_counter()
    results = run_all(out, backbone=args.backbone, iterations=args.iterations,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    text = table(results)
    print(text)
    (out / "table.md").write_text(text + "\n")
    print(f"figure: {figure(results, out / 'mean_recall_matrices.png')}")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
