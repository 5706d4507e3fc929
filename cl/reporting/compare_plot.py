"""The ``cl compare`` figure: metrics per group with error bars, and accuracy against memory.

Two panels: grouped bars of final average accuracy, forgetting and MTIL Transfer
(only where the runs' scenarios define them, :data:`cl.core.metrics.SCENARIO_EXCLUDED`)
per group of runs that differ only by seed, error bars = sample standard
deviation over seeds; and final average accuracy against the memory carried
after the last task (the aligned-memory comparison the class-incremental survey
of Zhou et al., "Deep Class-Incremental Learning: A Survey", asks for), its
accuracy axis from 0, its points black so that the bar colours keep one meaning.

Only the finished runs a :class:`~cl.reporting.comparison.Comparison` counts are drawn
(each identity once); the title says how many unfinished runs were left out. With
several protocols, each group's label starts with its protocol's number (``P1``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cl.reporting.aggregate import Group, mean_std
from cl.reporting.comparison import Comparison, build
from cl.reporting.runs import (
    METRIC_HEADERS,
    PLOT_FORMATS,
    RunSummary,
    defined_value,
    metric_keys,
    options_text,
)
from cl.runtime.io import atomic_write

#: metrics drawn as grouped bars
BAR_METRICS: tuple[str, ...] = ("average_accuracy", "forgetting", "mtil_transfer")


def _comparison(runs: Sequence[RunSummary] | Comparison, over: Sequence[str]) -> Comparison:
    return runs if isinstance(runs, Comparison) else build(runs, over=over)


def figure(runs: Sequence[RunSummary] | Comparison, over: Sequence[str] = ("seed",)) -> Figure:
    """Grouped bars of :data:`BAR_METRICS` (those defined for the runs' scenarios) per group,
    error bars = sample std over seeds; and accuracy against carried memory (finished runs
    only, each counted once: :func:`cl.reporting.comparison.build`)."""
    comparison = _comparison(runs, over)
    runs = comparison.runs
    several = len(comparison.tables) > 1
    groups: list[Group] = []
    labels: list[str] = []
    for i, (_, members) in enumerate(comparison.tables, 1):
        for g in members:
            groups.append(g)
            labels.append((f"P{i}: " if several else "") + g.first.strategy
                          + ("" if options_text(g) == "—" else f"\n{options_text(g)}"))
    shown = metric_keys(runs, None)
    keys = [k for k in BAR_METRICS if k in shown and any(defined_value(r, k) is not None for r in runs)]
    fig = Figure(figsize=(max(8.0, 4 + 1.4 * len(groups)), 4.8))
    bars, scatter = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    x = np.arange(len(groups))
    width = 0.8 / max(len(keys), 1)
    for i, key in enumerate(keys):
        stats = [mean_std([defined_value(r, key) for r in g.runs]) for g in groups]
        heights = [100 * (m or 0.0) for m, _, _ in stats]
        errors = [np.nan if s is None else 100 * s for _, s, _ in stats]  # n = 1: no bar
        bars.bar(x + (i - (len(keys) - 1) / 2) * width, heights, width, yerr=errors, capsize=3,
                 label=METRIC_HEADERS.get(key, key))
    few = len(groups) <= 4
    bars.set_xticks(x, labels, rotation=0 if few else 30, ha="center" if few else "right", fontsize=8)
    bars.set_ylabel("percent (mean ± std over seeds)")
    n = sorted({len(g.runs) for g in groups})
    left_out = len(comparison.unfinished)
    bars.set_title(f"metrics per group (n = {', '.join(map(str, n))})"
                   + (f"\n{left_out} unfinished run{'s' * (left_out > 1)} not drawn" if left_out
                      else ""), fontsize=10)
    if keys:
        bars.legend(fontsize=8)
    points = []
    for g, label in zip(groups, labels, strict=True):
        m, a = g.value("memory_bytes"), mean_std([r.metrics.get("average_accuracy") for r in g.runs])
        if m is not None and a[0] is not None:
            points.append((m, a[0], np.nan if a[1] is None else a[1], label.replace("\n", " ")))
    largest = max((p[0] for p in points), default=0.0)
    scale, unit = 1.0, "B"
    for i, u in enumerate(("B", "KiB", "MiB", "GiB")):
        if largest >= 1024**i:
            scale, unit = float(1024**i), u
    at: dict[tuple[float, float], int] = {}
    for m, a, s, lab in points:
        scatter.errorbar([m / scale], [100 * a], yerr=[100 * s], fmt="o", capsize=3, color="black")
        near = (round(m / scale / max(largest / scale, 1e-12), 2), round(a, 2))
        k = at[near] = at.get(near, -1) + 1  # labels of (near) coinciding points stacked
        scatter.annotate(lab, (m / scale, 100 * a), textcoords="offset points",
                         xytext=(4, 4 - 9 * k), fontsize=7)
    if points and min(p[0] for p in points) > 0 and largest > 10 * min(p[0] for p in points):
        scatter.set_xscale("log")
    scatter.set_xlabel(f"memory carried after the last task ({unit})")
    scatter.set_ylabel("average accuracy (%)")
    scatter.set_ylim(0, 105)  # accuracy from 0: distances between points read true
    scatter.set_title("accuracy vs memory")
    if not points:
        scatter.text(0.5, 0.5, "no run recorded memory_bytes", ha="center", va="center",
                     transform=scatter.transAxes)
    fig.tight_layout()
    return fig


def write_plot(runs: Sequence[RunSummary] | Comparison, path: str | os.PathLike[str],
               over: Sequence[str] = ("seed",)) -> Path:
    """Save :func:`figure` atomically to ``path`` (.png, .pdf or .svg)."""
    target = Path(path)
    if target.suffix.lower() not in PLOT_FORMATS:
        raise ValueError(f"plot file {str(target)!r} must end in {', '.join(PLOT_FORMATS)}.")
    fig = figure(runs, over)
    buf = io.BytesIO()
    fig.savefig(buf, format=target.suffix.lower()[1:], dpi=120)
    atomic_write(target, lambda fh: fh.write(buf.getvalue()))
    return target


__all__ = ["BAR_METRICS", "figure", "write_plot"]
