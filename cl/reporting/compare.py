"""Several runs side by side: one Markdown table and one figure (``cl compare``).

Each run directory's ``results.json`` (read with :func:`cl.core.results.load_results`)
becomes one row: what was run (stream, strategy, backbone, seed, tasks done),
its metrics in percent (definitions in :mod:`cl.core.metrics`), and its compute:
total training seconds and training FLOPs summed over tasks, and the memory the
strategy carries after its last finished task (bytes of added parameters,
statistics and exemplars; ``memory_bytes`` of the runner's compute record).

The figure has two panels: grouped bars of final average accuracy, forgetting
and MTIL Transfer per run, and final average accuracy against carried memory
(the aligned-memory comparison the class-incremental survey of Zhou et al.,
"Deep Class-Incremental Learning: A Survey", asks for).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cl.core.results import load_results
from cl.runtime.io import atomic_write, atomic_write_text

#: metric key -> short column header (percent points)
METRIC_HEADERS: dict[str, str] = {
    "average_accuracy": "avg acc",
    "average_incremental_accuracy": "avg inc acc",
    "forgetting": "forgetting",
    "forgetting_after_training": "forgetting (after training)",
    "backward_transfer": "BWT",
    "forward_transfer": "FWT",
    "mtil_transfer": "MTIL Transfer",
    "mtil_average": "MTIL Average",
    "mtil_last": "MTIL Last",
    "nevis_average_error": "NEVIS avg error",
}
#: metrics drawn as grouped bars
BAR_METRICS: tuple[str, ...] = ("average_accuracy", "forgetting", "mtil_transfer")
PLOT_FORMATS: tuple[str, ...] = (".png", ".pdf", ".svg")
_REQUIRED_KEYS = ("stream", "strategy", "backbone", "seed", "tasks", "completed_tasks", "metrics",
                  "compute")


@dataclass
class RunSummary:
    """One run, reduced to a table row.

    Attributes
    ----------
    label : str
        Short name of the run (its directory name, made unique).
    path : Path
    stream, strategy, backbone, status : str
    seed : int
    completed, n_tasks : int
        Tasks finished, tasks in the stream.
    metrics : dict of str to float or None
        Fractions in [0, 1] (``None``: undefined or missing).
    train_seconds, train_flops : float or None
        Summed over tasks (``None``: no task recorded it).
    memory_bytes : float or None
        What the strategy carries after the last finished task.
    """

    label: str
    path: Path
    stream: str
    strategy: str
    backbone: str
    seed: int
    status: str
    completed: int
    n_tasks: int
    metrics: dict[str, float | None] = field(default_factory=dict)
    train_seconds: float | None = None
    train_flops: float | None = None
    memory_bytes: float | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _total(compute: list[dict[str, Any]], key: str) -> float | None:
    values = [v for c in compute if (v := _number(c.get(key))) is not None]
    return float(sum(values)) if values else None


def summarize_run(results: dict[str, Any], path: str | os.PathLike[str], label: str | None = None) -> RunSummary:
    """Reduce one ``results.json`` dict to a :class:`RunSummary`.

    Raises
    ------
    ValueError
        When ``results`` lacks a key every run directory has (not a ``cl run`` result).
    """
    missing = [k for k in _REQUIRED_KEYS if k not in results]
    if missing:
        raise ValueError(
            f"{str(Path(path) / 'results.json')!r} is not a cl run result: it lacks "
            f"{', '.join(missing)}."
        )
    compute = list(results["compute"])
    n_tasks = len(results["tasks"])
    completed = int(results["completed_tasks"])
    last = compute[completed - 1] if 0 < completed <= len(compute) else {}
    return RunSummary(
        label=label or Path(path).name,
        path=Path(path),
        stream=str(results["stream"]),
        strategy=str(results["strategy"]),
        backbone=str(results["backbone"]),
        seed=int(results["seed"]),
        status=str(results.get("status", "unknown")),
        completed=completed,
        n_tasks=n_tasks,
        metrics={k: _number(v) for k, v in results["metrics"].items()},
        train_seconds=_total(compute[:completed], "train_seconds"),
        train_flops=_total(compute[:completed], "train_flops"),
        memory_bytes=_number(last.get("memory_bytes")),
    )


def _labels(paths: Sequence[Path]) -> list[str]:
    """Directory names, or longer path tails where two names collide."""
    labels = [p.name or str(p) for p in paths]
    depth = 1
    while len(set(labels)) < len(labels) and depth < 8:
        depth += 1
        labels = ["/".join(p.resolve().parts[-depth:]) for p in paths]
    return labels if len(set(labels)) == len(labels) else [str(p) for p in paths]


def load_runs(run_dirs: Sequence[str | os.PathLike[str]], *,
              allow_modified: bool = False) -> list[RunSummary]:
    """Read and summarize every run directory, in the order given (``allow_modified``: accept
    a ``results.json`` that fails its checksum, see :func:`cl.core.results.load_results`).

    Raises
    ------
    ValueError
        No run directory given.
    FileNotFoundError
        A directory without ``results.json`` (see :func:`cl.core.results.load_results`).
    """
    if not run_dirs:
        raise ValueError("cl compare needs at least one run directory.")
    paths = [Path(d) for d in run_dirs]
    for p in paths:
        if not p.is_dir():
            raise FileNotFoundError(f"{str(p)!r} is not a directory; pass run directories written by cl run.")
    return [summarize_run(load_results(p, allow_modified=allow_modified), p, label)
            for p, label in zip(paths, _labels(paths), strict=True)]


def _metric_keys(runs: Sequence[RunSummary], metrics: Sequence[str] | None) -> list[str]:
    present: list[str] = []
    for run in runs:
        present.extend(k for k in run.metrics if k not in present)
    if metrics is None:
        return present
    unknown = [m for m in metrics if m not in present]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; "
                         f"the runs have: {', '.join(present)}.")
    return list(metrics)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def format_bytes(n: float | None) -> str:
    """``1536 -> "1.5 KiB"``; ``None -> "—"``."""
    if n is None:
        return "—"
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while abs(n) >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


def _sci(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}"


def markdown_table(runs: Sequence[RunSummary], metrics: Sequence[str] | None = None) -> str:
    """The runs as one Markdown table (metrics in percent points).

    Parameters
    ----------
    runs : sequence of RunSummary
    metrics : sequence of str or None
        Metric keys to show (default: every metric any run has, in results order).
    """
    keys = _metric_keys(runs, metrics)
    header = (["run", "stream", "strategy", "backbone", "seed", "tasks"]
              + [f"{METRIC_HEADERS.get(k, k)} (%)" for k in keys]
              + ["train s", "train FLOPs", "memory"])
    lines = ["| " + " | ".join(header) + " |",
             "|" + "---|" * 6 + "---:|" * (len(keys) + 3)]
    for r in runs:
        tasks = f"{r.completed}/{r.n_tasks}" + ("" if r.status == "completed" else f" ({r.status})")
        cells = ([r.label, r.stream, r.strategy, r.backbone, str(r.seed), tasks]
                 + [_pct(r.metrics.get(k)) for k in keys]
                 + [_sci(r.train_seconds), _sci(r.train_flops), format_bytes(r.memory_bytes)])
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    notes = []
    streams = sorted({r.stream for r in runs})
    if len(streams) > 1:
        notes.append(f"Note: these runs are on different streams ({', '.join(streams)}); "
                     "their metrics are not directly comparable.")
    if any(r.status != "completed" for r in runs):
        notes.append("Runs that did not complete are scored on the tasks they finished.")
    return "\n".join(lines + ([""] + notes if notes else []))


def figure(runs: Sequence[RunSummary]) -> Figure:
    """Grouped bars of :data:`BAR_METRICS` per run, and accuracy against carried memory."""
    labels = [r.label for r in runs]
    keys = [k for k in BAR_METRICS if any(r.metrics.get(k) is not None for r in runs)]
    fig, (bars, scatter) = plt.subplots(1, 2, figsize=(max(8.0, 4 + 1.2 * len(runs)), 4.5),
                                        gridspec_kw={"width_ratios": [1.4, 1]})
    x = np.arange(len(runs))
    width = 0.8 / max(len(keys), 1)
    for i, key in enumerate(keys):
        heights = [100 * (r.metrics.get(key) or 0.0) for r in runs]
        bars.bar(x + (i - (len(keys) - 1) / 2) * width, heights, width, label=METRIC_HEADERS.get(key, key))
    bars.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    bars.set_ylabel("percent")
    bars.set_title("metrics per run")
    if keys:
        bars.legend(fontsize=8)
    points = [(r.memory_bytes, r.metrics.get("average_accuracy"), r.label) for r in runs]
    points = [(m, a, lab) for m, a, lab in points if m is not None and a is not None]
    for m, a, lab in points:
        scatter.scatter([m], [100 * a], s=40)
        scatter.annotate(lab, (m, 100 * a), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if points and min(p[0] for p in points) > 0 and max(p[0] for p in points) > 10 * min(p[0] for p in points):
        scatter.set_xscale("log")
    scatter.set_xlabel("memory carried after the last task (bytes)")
    scatter.set_ylabel("average accuracy (%)")
    scatter.set_title("accuracy vs memory")
    if not points:
        scatter.text(0.5, 0.5, "no run recorded memory_bytes", ha="center", va="center",
                     transform=scatter.transAxes)
    fig.tight_layout()
    return fig


def write_plot(runs: Sequence[RunSummary], path: str | os.PathLike[str]) -> Path:
    """Save :func:`figure` atomically to ``path`` (.png, .pdf or .svg)."""
    target = Path(path)
    if target.suffix.lower() not in PLOT_FORMATS:
        raise ValueError(f"plot file {str(target)!r} must end in {', '.join(PLOT_FORMATS)}.")
    fig = figure(runs)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=target.suffix.lower()[1:], dpi=120)
    finally:
        plt.close(fig)
    atomic_write(target, lambda fh: fh.write(buf.getvalue()))
    return target


def compare(run_dirs: Sequence[str | os.PathLike[str]], *, out: str | os.PathLike[str] | None = None,
            plot: str | os.PathLike[str] | None = None, metrics: Sequence[str] | None = None,
            allow_modified: bool = False) -> str:
    """Compare runs: return the Markdown table; write it to ``out`` and the figure to ``plot``.

    When both are written, the Markdown links the figure (relative path).
    """
    runs = load_runs(run_dirs, allow_modified=allow_modified)
    text = "# Run comparison\n\n" + markdown_table(runs, metrics) + "\n"
    if plot is not None:
        plot_path = write_plot(runs, plot)
        if out is not None:
            rel = os.path.relpath(plot_path.resolve(), Path(out).resolve().parent)
            text += f"\n![comparison]({Path(rel).as_posix()})\n"
    if out is not None:
        atomic_write_text(out, text)
    return text
