"""Figures of a run: accuracy heatmap, accuracy over time, NEVIS error vs compute,
accuracy vs memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from cl.core.metrics import nevis_error_curve
from cl.core.results import matrix_from_json


def _matrix(results: dict[str, Any]) -> np.ndarray:
    return matrix_from_json(results["accuracy_matrix"])


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _row_means(A: np.ndarray) -> np.ndarray:
    """Mean of each row over its evaluated entries (NaN for a row not evaluated)."""
    counts = (~np.isnan(A)).sum(axis=1)
    return np.where(counts > 0, np.nansum(A, axis=1) / np.maximum(counts, 1), np.nan)


def heatmap(results: dict[str, Any], path: Path) -> Path:
    """Accuracy matrix as a heatmap (rows: after training task t; columns: task j)."""
    A = _matrix(results)
    names = results["tasks"]
    T = len(names)
    size = min(2 + 0.45 * T, 24)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(A * 100, vmin=0, vmax=100, cmap="viridis")
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    if T <= 30:
        ax.set_xticks(range(T), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(T), names, fontsize=8)
        for t in range(T):
            for j in range(T):
                if not np.isnan(A[t, j]):
                    ax.text(j, t, f"{100 * A[t, j]:.0f}", ha="center", va="center",
                            color="white" if A[t, j] < 0.6 else "black", fontsize=7)
    ax.set_xlabel("evaluated task j")
    ax.set_ylabel("after training task t")
    ax.set_title(f"{results['stream']} · {results['strategy']} · {results['backbone']}")
    return _save(fig, path)


def accuracy_over_time(results: dict[str, Any], path: Path) -> Path:
    """Accuracy of each task after every training step (zero-shot at step 0)."""
    A = _matrix(results)
    T = A.shape[0]
    z = results.get("zero_shot")
    fig, ax = plt.subplots(figsize=(8, 5))
    steps = np.arange(T + 1)
    for j, name in enumerate(results["tasks"]):
        start = np.nan if z is None or z[j] is None else z[j]
        ax.plot(steps, np.r_[start, A[:, j]] * 100, marker="o", ms=3, label=name if T <= 12 else None)
    ax.plot(steps[1:], _row_means(A) * 100, color="black", lw=2.5, label="mean over all tasks")
    ax.set_xlabel("tasks trained")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def error_vs_compute(results: dict[str, Any], path: Path) -> Path:
    """NEVIS'22 running average error against cumulative training compute."""
    A = _matrix(results)
    compute = results["compute"]
    flops = np.array([c.get("train_flops", 0.0) for c in compute])
    use_flops = flops.sum() > 0
    cost = flops if use_flops else np.array([c.get("train_seconds", 0.0) for c in compute])
    x, err = nevis_error_curve(A, cost)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(x, err * 100, marker="o")
    ax.set_xlabel("cumulative training FLOPs" if use_flops else "cumulative training seconds")
    ax.set_ylabel("average error (%)")
    if use_flops and x[-1] > 0:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.set_title("error vs compute (NEVIS'22)")
    return _save(fig, path)


def accuracy_vs_memory(results: dict[str, Any], path: Path) -> Path:
    """Mean accuracy on the tasks seen so far against the memory the strategy carries.

    One point per task ``t``: ``x`` = ``memory_bytes`` after task t (statistics,
    adapters, exemplars kept for the next task), ``y`` = ``mean_{j<=t} A[t, j]``;
    compare methods at an aligned memory budget (Zhou et al., class-incremental survey).
    """
    A = _matrix(results)
    memory = np.array([c.get("memory_bytes", 0.0) for c in results["compute"]], dtype=float)
    seen = np.array([_row_means(A[t : t + 1, : t + 1])[0] for t in range(A.shape[0])])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(memory / 2**20, seen * 100, marker="o")
    for t, (x, y) in enumerate(zip(memory / 2**20, seen * 100, strict=True)):
        if not np.isnan(y):
            ax.annotate(str(t), (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("memory carried between tasks (MiB)")
    ax.set_ylabel("mean accuracy on seen tasks (%)")
    ax.grid(alpha=0.3)
    ax.set_title("accuracy vs memory")
    return _save(fig, path)


def write_all(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Every figure of a run, as PNG files in ``out_dir``."""
    return [
        heatmap(results, out_dir / "accuracy_matrix.png"),
        accuracy_over_time(results, out_dir / "accuracy_over_time.png"),
        error_vs_compute(results, out_dir / "error_vs_compute.png"),
        accuracy_vs_memory(results, out_dir / "accuracy_vs_memory.png"),
    ]
