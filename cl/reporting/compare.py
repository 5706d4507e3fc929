"""Runs side by side, seeds aggregated: Markdown, CSV and a figure (``cl compare``).

Each run directory's ``results.json`` (read with :func:`cl.core.results.load_results`)
becomes a :class:`RunSummary`: what was run, its metrics (definitions in
:mod:`cl.core.metrics`) and its compute: total training seconds and training
FLOPs summed over tasks (every hyper-parameter trial included), and the memory
the strategy carries after its last finished task. A directory holding run
directories (a sweep, ``cl run --seeds``) stands for all of them.

Runs are grouped by everything but the seed (:mod:`cl.reporting.aggregate`):
one row per group with, per metric, the mean ± sample standard deviation over
its seeds in percent points and ``n``; the strategy options of the group, and
any other setting that differs between groups, are shown. ``per_seed=True`` adds
one row per run under its group. Metrics a scenario leaves undefined
(:data:`cl.core.metrics.SCENARIO_EXCLUDED`: MTIL's metrics in a class-incremental
stream) are left out, or shown as "—" for such runs among others.

The figure is :mod:`cl.reporting.compare_plot`'s.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from cl.reporting.aggregate import differing, format_value, group_runs, mean_std
from cl.reporting.runs import (
    METRIC_HEADERS,
    PLOT_FORMATS,
    RunSummary,
    defined_value,
    format_bytes,
    load_runs,
    metric_header,
    metric_keys,
    options_text,
    summarize_run,
)
from cl.runtime.io import atomic_write_text


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _pm(mean: float | None, std: float | None) -> str:
    """``"92.3 ± 0.4"`` in percent points (``"92.3"`` when the std is undefined)."""
    if mean is None:
        return "—"
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def _sci(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}"


def _tasks(runs: Sequence[RunSummary]) -> str:
    done = min(r.completed for r in runs)
    states = sorted({r.status for r in runs if r.status != "completed"})
    return f"{done}/{runs[0].n_tasks}" + (f" ({', '.join(states)})" if states else "")


def markdown_table(runs: Sequence[RunSummary], metrics: Sequence[str] | None = None, *,
                   per_seed: bool = False, over: Sequence[str] = ("seed",)) -> str:
    """The runs grouped by everything but the seed, as one Markdown table.

    Parameters
    ----------
    runs : sequence of RunSummary
    metrics : sequence of str or None
        Metric keys to show (default: every metric the runs' scenarios define).
    per_seed : bool
        Add one row per run (its seed and directory) under its group's row.
    over : sequence of str
        Setting keys aggregated over (default the seed).

    Notes
    -----
    Metric cells are ``mean ± std`` in percent points over the group's runs (sample
    standard deviation; the mean alone when n = 1); compute cells are means.
    """
    keys = metric_keys(runs, metrics)
    groups = group_runs(runs, over)
    extra = differing(groups, ("strategy.", "stream.name", "backbone"))
    header = (["strategy", "options", "stream", "backbone"] + (["settings"] if extra else [])
              + ["n", "seeds", "tasks"] + [f"{metric_header(k)} (%)" for k in keys]
              + ["train s", "train FLOPs", "memory"])
    left = 4 + bool(extra) + 3
    lines = ["| " + " | ".join(header) + " |",
             "|" + "---|" * left + "---:|" * (len(keys) + 3)]

    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    for g in groups:
        first = g.first
        settings = [", ".join(f"{k}={format_value(g.settings.get(k))}" for k in extra)] if extra else []
        cells = ([first.strategy, options_text(g), first.stream, first.backbone] + settings
                 + [str(len(g.runs)), ",".join(map(str, g.seeds)), _tasks(g.runs)]
                 + [_pm(*mean_std([defined_value(r, k) for r in g.runs])[:2]) for k in keys]
                 + [_sci(g.value("train_seconds")), _sci(g.value("train_flops")),
                    format_bytes(g.value("memory_bytes"))])
        lines.append(row(cells))
        if per_seed:
            for r in g.runs:
                cells = ([f"↳ seed {r.seed}", r.label, "", ""] + ([""] if extra else [])
                         + ["1", str(r.seed), _tasks([r])]
                         + [_pct(defined_value(r, k)) for k in keys]
                         + [_sci(r.train_seconds), _sci(r.train_flops), format_bytes(r.memory_bytes)])
                lines.append(row(cells))
    notes = [(f"Metrics: mean ± sample standard deviation over the n runs of a row (over "
              f"{', '.join(over)}), in percent points; compute: means.")]
    streams = sorted({r.stream for r in runs})
    if len(streams) > 1:
        notes.append(f"Note: these runs are on different streams ({', '.join(streams)}); "
                     "their metrics are not directly comparable.")
    scored = sorted({r.score for r in runs if r.score != "accuracy"})
    if scored:
        notes.append(f"Image-text runs: metrics without a score prefix are of their primary score "
                     f"({', '.join(scored)}); 'final' is the mean over tasks after the last task.")
    if any(r.status != "completed" for r in runs):
        notes.append("Runs that did not complete are scored on the tasks they finished.")
    return "\n".join(lines + [""] + notes)


def csv_table(runs: Sequence[RunSummary], metrics: Sequence[str] | None = None, *,
              per_seed: bool = False, over: Sequence[str] = ("seed",)) -> str:
    """The grouped table as CSV: one ``mean`` row per group (metric ``_mean``, ``_std`` as
    fractions in [0, 1], ``n``), plus one ``seed`` row per run with ``per_seed``."""
    keys = metric_keys(runs, metrics)
    groups = group_runs(runs, over)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", "strategy", "options", "stream", "backbone", "scenario", "n", "seeds",
                "seed", "run", "tasks"]
               + [f"{k}_{s}" for k in keys for s in ("mean", "std")]
               + ["train_seconds", "train_flops", "memory_bytes"])

    def num(v: float | None) -> str:
        return "" if v is None else repr(float(v))

    for g in groups:
        first = g.first
        base = [first.strategy, options_text(g), first.stream, first.backbone, first.scenario or ""]
        stats = [mean_std([defined_value(r, k) for r in g.runs]) for k in keys]
        w.writerow(["mean", *base, len(g.runs), " ".join(map(str, g.seeds)), "", "", _tasks(g.runs)]
                   + [x for m, s, _ in stats for x in (num(m), num(s))]
                   + [num(g.value("train_seconds")), num(g.value("train_flops")),
                      num(g.value("memory_bytes"))])
        if per_seed:
            for r in g.runs:
                w.writerow(["seed", *base, 1, r.seed, r.seed, r.label, _tasks([r])]
                           + [x for k in keys for x in (num(defined_value(r, k)), "")]
                           + [num(r.train_seconds), num(r.train_flops), num(r.memory_bytes)])
    return buf.getvalue()


def compare(run_dirs: Sequence[str | os.PathLike[str]], *, out: str | os.PathLike[str] | None = None,
            plot: str | os.PathLike[str] | None = None, metrics: Sequence[str] | None = None,
            csv_path: str | os.PathLike[str] | None = None, per_seed: bool = False,
            over: Sequence[str] = ("seed",), allow_modified: bool = False) -> str:
    """Compare runs: return the Markdown table; write it to ``out``, the CSV to ``csv_path``
    and the figure to ``plot``.

    When both are written, the Markdown links the figure (relative path).
    """
    runs = load_runs(run_dirs, allow_modified=allow_modified)
    if plot is not None and Path(plot).suffix.lower() not in PLOT_FORMATS:
        raise ValueError(f"plot file {str(plot)!r} must end in {', '.join(PLOT_FORMATS)}.")
    text = ("# Run comparison\n\n" + markdown_table(runs, metrics, per_seed=per_seed, over=over)
            + "\n")
    if csv_path is not None:
        atomic_write_text(csv_path, csv_table(runs, metrics, per_seed=per_seed, over=over))
    if plot is not None:
        from cl.reporting.compare_plot import write_plot  # matplotlib: only for a figure

        plot_path = write_plot(runs, plot, over)
        if out is not None:
            rel = os.path.relpath(plot_path.resolve(), Path(out).resolve().parent)
            text += f"\n![comparison]({Path(rel).as_posix()})\n"
    if out is not None:
        atomic_write_text(out, text)
    return text


__all__ = ["METRIC_HEADERS", "RunSummary", "compare", "csv_table", "format_bytes", "load_runs",
           "markdown_table", "summarize_run"]
