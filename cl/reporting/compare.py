"""Runs side by side, seeds aggregated: Markdown, CSV and a figure (``cl compare``).

Each run directory's ``results.json`` (read with :func:`cl.core.results.load_results`)
becomes a :class:`RunSummary`: what was run, its metrics (definitions in
:mod:`cl.core.metrics`) and its compute: total training seconds and training
FLOPs summed over tasks (every hyper-parameter trial included), feature extraction
seconds where recorded, and the memory the strategy carries after its last task.
A directory holding run directories (a sweep, ``cl run --seeds``) stands for all
of them. A comparison a paper can quote (:func:`select`):

1. **each run counted once**: runs with one identity (:mod:`cl.reporting.identity`:
   resolved config without paths, seed, code fingerprint) reached by several paths
   are counted once, and the duplicates left out are listed;
2. **only finished runs aggregated**: a run that did not complete every task
   (state as ``cl sweep --status`` reads it) is listed apart with its state;
3. **one table per protocol** (:mod:`cl.reporting.protocol`: stream and options,
   class order, backbone weights, image transform, memory budget), its header naming
   the protocol; runs of two protocols are never averaged.

In a table, runs are grouped by everything but the seed (:mod:`cl.reporting.aggregate`,
and the keys of ``over``): one row per group with, per metric, the mean ± sample
standard deviation over its runs in percent points and ``n``. A row whose runs gave
the same score matrix is marked: its ± 0 says the seed changes nothing on that
protocol, not that the method is stable. ``per_seed=True`` adds one row per run.
Metrics a scenario leaves undefined (:data:`cl.core.metrics.SCENARIO_EXCLUDED`) are
left out, or shown as "—" for such runs among others.

More sections (a memory-aligned view...) are functions ``Comparison -> str`` passed
as ``sections`` to :func:`compare`. The figure is :mod:`cl.reporting.compare_plot`'s.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from cl.reporting.aggregate import Group, differing, format_value, mean_std
from cl.reporting.comparison import Comparison, build, same_results, select
from cl.reporting.protocol import Protocol
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

#: marks a row whose runs all gave the same score matrix
SAME_MARK = "†"


# -- cells ---------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _pm(mean: float | None, std: float | None, same: bool = False) -> str:
    """``"92.3 ± 0.4"`` in percent points (``"92.3"`` when the std is undefined)."""
    if mean is None:
        return "—"
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}") \
        + (SAME_MARK if same and std is not None else "")


def _sci(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _compute_columns(runs: Sequence[RunSummary]) -> list[tuple[str, str]]:
    """(header, RunSummary attribute) of the compute columns the runs have."""
    columns = [("train s", "train_seconds")]
    if any(r.extract_seconds is not None for r in runs):
        columns.append(("extract s", "extract_seconds"))
    return columns + [("train FLOPs", "train_flops"), ("memory", "memory_bytes")]


def _compute_cell(attribute: str, value: float | None) -> str:
    return format_bytes(value) if attribute == "memory_bytes" else _sci(value)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


# -- sections --------------------------------------------------------------------------
def protocol_table(protocol: Protocol, groups: Sequence[Group], keys: Sequence[str], *,
                   per_seed: bool = False, number: int = 1) -> list[str]:
    """One protocol's Markdown table and its notes."""
    runs = [r for g in groups for r in g.runs]
    extra = differing(groups, ("strategy.",))
    compute = _compute_columns(runs)
    header = (["strategy", "options"] + (["settings"] if extra else []) + ["n", "seeds"]
              + [f"{metric_header(k)} (%)" for k in keys] + [h for h, _ in compute])
    left = 4 + bool(extra)
    lines = [_row(header), "|" + "---|" * left + "---:|" * (len(keys) + len(compute))]
    marked, repeated = False, []
    for g in groups:
        same = same_results(g)
        marked |= same
        settings = [", ".join(f"{k}={format_value(g.settings.get(k))}" for k in extra)] \
            if extra else []
        lines.append(_row(
            [g.first.strategy, options_text(g)] + settings
            + [str(len(g.runs)), ",".join(map(str, g.seeds))]
            + [_pm(*mean_std([defined_value(r, k) for r in g.runs])[:2], same) for k in keys]
            + [_compute_cell(a, g.value(a)) for _, a in compute]))
        repeated += [(g.first.strategy, s) for s, c in Counter(g.seeds).items() if c > 1]
        if per_seed:
            for r in g.runs:
                lines.append(_row(
                    [f"↳ seed {r.seed}", r.label] + ([""] if extra else []) + ["1", str(r.seed)]
                    + [_pct(defined_value(r, k)) for k in keys]
                    + [_compute_cell(a, getattr(r, a)) for _, a in compute]))
    notes = []
    if marked:
        notes.append(f"{SAME_MARK} The runs of this row gave identical score matrices: on this "
                     "protocol the seed changes nothing (a deterministic method on a fixed class "
                     "order and split), so ± 0 is not a measure of stability. To report over class "
                     "orders, set stream.class_order_seed=run (each seed draws its own order).")
    for strategy, seed in repeated:
        notes.append(f"Note: seed {seed} appears more than once in the {strategy} row: runs of "
                     "one config and seed whose code differs (results.json: environment.git_commit, "
                     "code).")
    return [f"## P{number}: {protocol.describe()}", "", *lines, *([""] + notes if notes else [])]


def unfinished_section(comparison: Comparison) -> list[str]:
    """The runs not aggregated, with their state."""
    if not comparison.unfinished:
        return []
    lines = ["## Not aggregated: unfinished runs", "",
             ("Their state as `cl sweep --status` reads it; resume them (`cl run --resume DIR`, "
              "or rerun the sweep) to count them."), "",
             "| run | strategy | stream | seed | status | tasks | error |",
             "|---|---|---|---:|---|---:|---|"]
    for u in comparison.unfinished:
        r = u.run
        lines.append(_row([u.label, r.strategy if r else "?", r.stream if r else "?",
                           str(r.seed) if r else "?", u.status, f"{u.completed}/{u.n_tasks or '?'}",
                           (u.error or "").splitlines()[0][:120] if u.error else ""]))
    return lines


def duplicates_section(comparison: Comparison) -> list[str]:
    """The runs left out as duplicates of a run counted."""
    if not comparison.duplicates:
        return []
    lines = ["## Duplicates left out (each run counted once)", ""]
    for d in comparison.duplicates:
        if d.reason == "the same directory":
            lines.append(f"- {d.run.path} (seed {d.run.seed}): reached more than once; counted once")
        else:
            lines.append(f"- {d.run.path} (seed {d.run.seed}): {d.reason} as {d.kept.path}; "
                         "counted once")
    return lines


def markdown(comparison: Comparison, metrics: Sequence[str] | None = None, *,
             per_seed: bool = False,
             sections: Sequence[Callable[[Comparison], str]] = ()) -> str:
    """The comparison as Markdown: one table per protocol, then the unfinished runs, the
    duplicates left out and any extra ``sections``."""
    runs = comparison.runs
    if not runs:
        lines = ["No finished run to aggregate."]
    else:
        keys = metric_keys(runs, metrics)
        lines = []
        for number, (protocol, groups) in enumerate(comparison.tables, 1):
            lines += protocol_table(protocol, groups, keys, per_seed=per_seed,
                                    number=number) + [""]
        lines.append(f"Metrics: mean ± sample standard deviation over the n runs of a row (over "
                     f"{', '.join(comparison.over)}), in percent points; compute: means. Each "
                     "table (P1, P2...) is one protocol: stream and its options, class order, "
                     "backbone weights, image transform, memory budget; runs of different "
                     "protocols are never averaged.")
        if len(comparison.tables) > 1:
            lines.append(f"Note: these runs follow {len(comparison.tables)} protocols; numbers of "
                         "two tables are not directly comparable.")
        scored = sorted({r.score for r in runs if r.score != "accuracy"})
        if scored:
            lines.append(f"Image-text runs: metrics without a score prefix are of their primary "
                         f"score ({', '.join(scored)}); 'final' is the mean over tasks after the "
                         "last task.")
    for extra in (unfinished_section(comparison), duplicates_section(comparison)):
        if extra:
            lines += ["", *extra]
    for section in sections:
        lines += ["", section(comparison)]
    return "\n".join(lines)


def markdown_table(runs: Sequence[RunSummary], metrics: Sequence[str] | None = None, *,
                   per_seed: bool = False, over: Sequence[str] = ("seed",)) -> str:
    """:func:`markdown` of loaded runs (:func:`build`)."""
    return markdown(build(runs, over=over), metrics, per_seed=per_seed)


def csv_table(runs: Sequence[RunSummary] | Comparison, metrics: Sequence[str] | None = None, *,
              per_seed: bool = False, over: Sequence[str] = ("seed",)) -> str:
    """The grouped tables as CSV: one ``mean`` row per group (its ``protocol``; metric
    ``_mean``, ``_std`` as fractions in [0, 1]; ``n``; ``same_results``: its runs gave one
    score matrix), plus one ``seed`` row per run with ``per_seed``. Unfinished runs and
    duplicates are left out."""
    comparison = runs if isinstance(runs, Comparison) else build(runs, over=over)
    keys = metric_keys(comparison.runs, metrics) if comparison.runs else []
    compute = [a for _, a in _compute_columns(comparison.runs)]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", "protocol", "strategy", "options", "stream", "backbone", "scenario", "n",
                "seeds", "seed", "run", "same_results"]
               + [f"{k}_{s}" for k in keys for s in ("mean", "std")] + compute)

    def num(v: float | None) -> str:
        return "" if v is None else repr(float(v))

    for protocol, groups in comparison.tables:
        for g in groups:
            first = g.first
            base = [protocol.describe(), first.strategy, options_text(g), first.stream,
                    first.backbone, first.scenario or ""]
            stats = [mean_std([defined_value(r, k) for r in g.runs]) for k in keys]
            w.writerow(["mean", *base, len(g.runs), " ".join(map(str, g.seeds)), "", "",
                        str(same_results(g)).lower()]
                       + [x for m, s, _ in stats for x in (num(m), num(s))]
                       + [num(g.value(a)) for a in compute])
            if per_seed:
                for r in g.runs:
                    w.writerow(["seed", *base, 1, r.seed, r.seed, r.label, ""]
                               + [x for k in keys for x in (num(defined_value(r, k)), "")]
                               + [num(getattr(r, a)) for a in compute])
    return buf.getvalue()


def compare(run_dirs: Sequence[str | os.PathLike[str]], *, out: str | os.PathLike[str] | None = None,
            plot: str | os.PathLike[str] | None = None, metrics: Sequence[str] | None = None,
            csv_path: str | os.PathLike[str] | None = None, per_seed: bool = False,
            over: Sequence[str] = ("seed",), allow_modified: bool = False,
            sections: Sequence[Callable[[Comparison], str]] = ()) -> str:
    """Compare runs: return the Markdown; write it to ``out``, the CSV to ``csv_path`` and the
    figure to ``plot``.

    When both are written, the Markdown links the figure (relative path).
    """
    if plot is not None and Path(plot).suffix.lower() not in PLOT_FORMATS:
        raise ValueError(f"plot file {str(plot)!r} must end in {', '.join(PLOT_FORMATS)}.")
    comparison = select(run_dirs, over=over, allow_modified=allow_modified)
    text = "# Run comparison\n\n" + markdown(comparison, metrics, per_seed=per_seed,
                                             sections=sections) + "\n"
    if csv_path is not None:
        atomic_write_text(csv_path, csv_table(comparison, metrics, per_seed=per_seed))
    if plot is not None:
        from cl.reporting.compare_plot import write_plot  # matplotlib: only for a figure

        plot_path = write_plot(comparison, plot)
        if out is not None:
            rel = os.path.relpath(plot_path.resolve(), Path(out).resolve().parent)
            text += f"\n![comparison]({Path(rel).as_posix()})\n"
    if out is not None:
        atomic_write_text(out, text)
    return text


__all__ = ["METRIC_HEADERS", "SAME_MARK", "Comparison", "RunSummary", "build", "compare",
           "csv_table", "format_bytes", "load_runs", "markdown", "markdown_table",
           "same_results", "select", "summarize_run"]
