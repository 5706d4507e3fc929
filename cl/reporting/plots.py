"""Figures of a run: accuracy heatmap, accuracy over time, NEVIS error vs compute,
accuracy vs memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cl.core.metrics import nevis_error_curve
from cl.core.results import matrix_from_json
from cl.runtime.io import save_figure


def _matrix(results: dict[str, Any]) -> np.ndarray:
    return matrix_from_json(results["accuracy_matrix"])


def _score(results: dict[str, Any]) -> str:
    """Name of the score the matrix holds (``accuracy``; ``mean_recall`` for image-text runs)."""
    return str(results.get("score", "accuracy"))


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    save_figure(fig, path, root=path.parent, dpi=120)
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
    fig = Figure(figsize=(size, size * 0.85))
    ax = fig.subplots()
    im = ax.imshow(A * 100, vmin=0, vmax=100, cmap="viridis")
    fig.colorbar(im, ax=ax, label=f"{_score(results)} (%)")
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


def _byte_unit(largest: float) -> tuple[float, str]:
    """(divisor, unit) so that ``largest / divisor`` reads in [1, 1024): B, KiB, MiB, GiB, TiB."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while largest >= 1024 and i < len(units) - 1:
        largest /= 1024
        i += 1
    return float(1024**i), units[i]


def accuracy_over_time(results: dict[str, Any], path: Path) -> Path:
    """Accuracy of each task after every training step, and the mean over tasks.

    Step 0 is the zero-shot row when the backbone has a text tower; otherwise
    there is no zero-shot classifier and every line starts at step 1. A task's
    line is dotted until the task is learned and solid from then on; solid lines
    are drawn widest first with distinct markers, so lines at equal accuracy (all
    at 100 %) stay visible. The legend sits outside the axes.
    """
    A = _matrix(results)
    T = A.shape[0]
    z = results.get("zero_shot")
    with_zero_shot = z is not None and bool(results.get("backbone_has_text",
                                                         results.get("backbone") != "pixels"))
    steps = np.arange(0 if with_zero_shot else 1, T + 1)
    fig = Figure(figsize=(9.5 if T <= 12 else 8, 5))
    ax = fig.subplots()
    markers = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
    widths = np.linspace(4.5, 1.2, T) if T > 1 else np.array([2.0])
    for j, name in enumerate(results["tasks"]):
        ys = 100 * (A[:, j] if not with_zero_shot
                    else np.r_[np.nan if z[j] is None else z[j], A[:, j]])
        learned = int(np.searchsorted(steps, j + 1))  # index of the step that learns task j
        (line,) = ax.plot(steps[learned:], ys[learned:], marker=markers[j % len(markers)], ms=4,
                          lw=widths[j], alpha=0.85, label=name if T <= 12 else None, zorder=2 + j)
        ax.plot(steps[: learned + 1], ys[: learned + 1], ls=":", lw=1.0, color=line.get_color(),
                alpha=0.7, zorder=1)
    means = _row_means(A) * 100
    if with_zero_shot:
        means = np.r_[100 * np.nanmean(np.array(z, dtype=float)), means]
    ax.plot(steps, means, color="black", lw=2.0, ls="--", marker="o", ms=5,
            label="mean over all tasks", zorder=3 + T)
    ax.plot([], [], color="0.4", ls=":", lw=1.0, label="(dotted: not yet learned)")
    ax.set_xticks(steps if len(steps) <= 25 else np.unique(np.linspace(steps[0], T, 11).round()))
    ax.set_xlim(steps[0] - 0.3, T + 0.3)
    ax.set_xlabel("tasks trained" + (" (0: zero-shot)" if with_zero_shot else ""))
    ax.set_ylabel(f"{_score(results)} (%)")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    if T <= 12:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{results['stream']} · {results['strategy']}: {_score(results)} of each task "
                 "over time")
    return _save(fig, path)


def error_vs_compute(results: dict[str, Any], path: Path) -> Path:
    """Running average error against cumulative training compute (the NEVIS'22 metric,
    Bornschein et al. 2023, §3, for any stream); with a per-task hyper-parameter search
    every trial's compute is included."""
    A = _matrix(results)
    compute = results["compute"]
    flops = np.array([c.get("train_flops", 0.0) for c in compute], dtype=float)
    use_flops = flops.sum() > 0
    cost = flops if use_flops else np.array([c.get("train_seconds", 0.0) for c in compute])
    x, err = nevis_error_curve(A, cost)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.plot(x, err * 100, marker="o")
    trials = max((int(c.get("hp_trials", 0)) for c in compute), default=0)
    unit = "FLOPs" if use_flops else "seconds"
    ax.set_xlabel(f"cumulative training {unit}"
                  + (f" (all {trials} hp trials per task)" if trials else ""))
    ax.set_ylabel("average error on tasks learned (%)")
    if use_flops and x[-1] > 0 and x[0] > 0 and x[-1] > 10 * x[0]:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.set_title(f"{results['stream']} · {results['strategy']}: error vs compute")
    return _save(fig, path)


def accuracy_vs_memory(results: dict[str, Any], path: Path) -> Path:
    """Mean accuracy on the tasks seen so far, and the memory the strategy carries, per task.

    Two panels over the tasks trained (1..T): above, ``mean_{j<=t} A[t, j]``; below,
    ``memory_bytes`` after task t (statistics, adapters, exemplars kept for the next
    task) as bars from 0, in the unit that reads best. Memory on its own axis keeps a
    method whose memory does not grow readable (accuracy against a constant memory
    would be a vertical line); the title says when memory is constant. Methods are
    compared at an aligned memory budget with ``cl compare`` (Zhou et al.,
    class-incremental survey).
    """
    A = _matrix(results)
    memory = np.array([c.get("memory_bytes", np.nan) for c in results["compute"]], dtype=float)
    seen = np.array([_row_means(A[t : t + 1, : t + 1])[0] for t in range(A.shape[0])])
    steps = np.arange(1, A.shape[0] + 1)
    known = memory[~np.isnan(memory)]
    scale, unit = _byte_unit(float(known.max()) if len(known) else 0.0)
    fig = Figure(figsize=(7, 5.2))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.6, 1]})
    top.plot(steps, seen * 100, marker="o", color="C0")
    top.set_ylabel(f"mean {_score(results)}\non tasks seen (%)")
    top.grid(alpha=0.3)
    bottom.bar(steps[: len(memory)], memory / scale, color="C7", width=0.6)
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel(f"memory carried ({unit})")
    bottom.set_xlabel("tasks trained")
    bottom.set_xticks(steps)
    bottom.grid(alpha=0.3, axis="y")
    constant = len(known) > 1 and np.all(known == known[0])
    title = f"{results['stream']} · {results['strategy']}: accuracy and memory per task"
    if constant:
        title += f"\n(memory constant: {known[0] / scale:.3g} {unit})"
    top.set_title(title)
    return _save(fig, path)


def write_all(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Every figure of a run, as PNG files in ``out_dir``."""
    figures = [
        heatmap(results, out_dir / "accuracy_matrix.png"),
        accuracy_over_time(results, out_dir / "accuracy_over_time.png"),
        error_vs_compute(results, out_dir / "error_vs_compute.png"),
        accuracy_vs_memory(results, out_dir / "accuracy_vs_memory.png"),
    ]
    if "scores" in results:  # image-text retrieval: the key score matrices side by side
        from cl.reporting.scores import retrieval_figure

        figures.append(retrieval_figure(results, out_dir / "retrieval_matrices.png"))
    return figures
