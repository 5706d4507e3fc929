"""Runs scored by more than accuracy (image-text retrieval): every score matrix in the report,
the terminal and one figure.

A ``results.json`` with ``scores`` (:mod:`cl.core.results`) holds one T×T matrix
per score (``i2t_recall@1`` ... ``mean_recall``, ``map@K``) and
``score_metrics``, :func:`cl.core.metrics.summarize` of each. The primary score
(``score``, e.g. ``mean_recall``) is the one in ``accuracy_matrix`` and
``metrics``, which every other view (figures over time, ``cl compare``, sweeps)
reads. Values are fractions in [0, 1], shown in percent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cl.core.metrics import defined_metrics
from cl.reporting.terminal import print_table
from cl.runtime.io import save_figure

__all__ = ["KEY_SCORES", "SCORE_LABELS", "print_scores", "retrieval_figure", "score_label",
           "score_metrics_markdown", "scores_markdown"]

#: scores shown in the terminal summary and the figure, where a run has them
KEY_SCORES: tuple[str, ...] = ("i2t_recall@1", "t2i_recall@1", "mean_recall", "map@1")
SCORE_LABELS: dict[str, str] = {
    "accuracy": "accuracy",
    "mean_recall": "mean recall (R@1, 5, 10, both directions)",
    "i2t_mean_recall": "image→text mean recall",
    "t2i_mean_recall": "text→image mean recall",
}
#: metrics of each score shown in the report
_METRICS: tuple[str, ...] = ("average_accuracy", "average_incremental_accuracy", "forgetting",
                             "backward_transfer", "forward_transfer", "mtil_transfer")
_METRIC_NAMES = {"average_accuracy": "final (mean over tasks)",
                 "average_incremental_accuracy": "average incremental",
                 "forgetting": "forgetting (max-based)", "backward_transfer": "BWT",
                 "forward_transfer": "FWT", "mtil_transfer": "transfer (MTIL)"}


def score_label(name: str) -> str:
    """Readable name of a score: ``i2t_recall@5`` → ``image→text R@5``."""
    if name in SCORE_LABELS:
        return SCORE_LABELS[name]
    for prefix, text in (("i2t_recall@", "image→text R@"), ("t2i_recall@", "text→image R@"),
                         ("map@", "multimodal mAP@")):
        if name.startswith(prefix):
            return text + name[len(prefix):]
    return name


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _matrix_table(results: dict[str, Any], name: str) -> str:
    names = results["tasks"]
    lines = ["| after \\ task | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    zero = results["zero_shot_scores"].get(name)
    if zero is not None:
        lines.append("| before training | " + " | ".join(_pct(v) for v in zero) + " |")
    for task, row in zip(names, results["scores"][name], strict=True):
        lines.append(f"| {task} | " + " | ".join(_pct(v) for v in row) + " |")
    return "\n".join(lines)


def scores_markdown(results: dict[str, Any]) -> str:
    """Every score matrix (percent) as Markdown, the primary score first."""
    primary = results["score"]
    order = [primary, *[s for s in results["scores"] if s != primary]]
    parts = []
    for name in order:
        title = f"### {name}: {score_label(name)}" + (" (primary score)" if name == primary else "")
        parts.append(f"{title}\n\n{_matrix_table(results, name)}")
    return "\n\n".join(parts)


def score_metrics_markdown(results: dict[str, Any]) -> str:
    """Metrics (rows) of every score (columns) in percent points, those the scenario defines."""
    scores = list(results["scores"])
    keys = defined_metrics(results.get("scenario"), list(_METRICS))
    lines = ["| metric | " + " | ".join(scores) + " |", "|---|" + "---:|" * len(scores)]
    for key in keys:
        cells = [_pct(results["score_metrics"][s].get(key)) for s in scores]
        lines.append(f"| {_METRIC_NAMES[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_scores(results: dict[str, Any], console: Console) -> None:
    """Final value, forgetting and BWT of the key scores, as a terminal table."""
    table = Table(title=f"retrieval (%) — {results['stream']} · {results['strategy']} · "
                        f"{results['backbone']}")
    table.add_column("score")
    for key in ("final", "forgetting", "BWT"):
        table.add_column(key, justify="right")
    for name in [s for s in KEY_SCORES if s in results["scores"]]:
        m = results["score_metrics"][name]
        table.add_row(score_label(name), _pct(m.get("average_accuracy")), _pct(m.get("forgetting")),
                      _pct(m.get("backward_transfer")))
    print_table(table, console)


def retrieval_figure(results: dict[str, Any], path: Path) -> Path:
    """Save :func:`retrieval_heatmaps` to ``path``."""
    fig = retrieval_heatmaps(results)
    save_figure(fig, path, root=Path(path).parent, dpi=120, bbox_inches="tight")
    return path


def retrieval_heatmaps(results: dict[str, Any]) -> Any:
    """Heatmaps of the key score matrices side by side (rows: the zero-shot row, i.e. the
    scores before any training, when recorded, then after task t; columns: task j), as a
    matplotlib figure."""
    import numpy as np
    from matplotlib.figure import Figure

    from cl.core.results import matrix_from_json

    shown = [s for s in KEY_SCORES if s in results["scores"]]
    names = results["tasks"]
    T = len(names)
    zeros = results.get("zero_shot_scores") or {}
    size = min(2.4 + 0.3 * (T + 1), 8.3)
    fig = Figure(figsize=(size * len(shown) + 1.0, size + 1.0), layout="constrained")
    axes = fig.subplots(1, len(shown), squeeze=False)
    for k, (ax, name) in enumerate(zip(axes[0], shown, strict=True)):
        A = matrix_from_json(results["scores"][name])
        zero = zeros.get(name)
        rows = list(names)
        if zero is not None:  # the row before training: what training adds is read against it
            A = np.vstack([np.array([np.nan if v is None else v for v in zero], dtype=float), A])
            rows = ["zero-shot", *rows]
        im = ax.imshow(A * 100, vmin=0, vmax=100, cmap="viridis")
        if zero is not None:
            ax.axhline(0.5, color="white", linewidth=2)
        if T <= 20:
            ax.set_xticks(range(T), names, rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(len(rows)), rows if k == 0 else [""] * len(rows), fontsize=7)
            for t in range(len(rows)):
                for j in range(T):
                    if not np.isnan(A[t, j]):
                        ax.text(j, t, f"{100 * A[t, j]:.0f}", ha="center", va="center", fontsize=7,
                                color="white" if A[t, j] < 0.6 else "black")
        ax.set_title(score_label(name), fontsize=9)
        ax.set_xlabel("evaluated task j")
    axes[0][0].set_ylabel("before training (zero-shot), then after training task t"
                          if zeros else "after training task t")
    fig.colorbar(im, ax=axes[0].tolist(), label="%", shrink=0.8)
    fig.suptitle(f"{results['stream']} · {results['strategy']} · {results['backbone']}")
    return fig
