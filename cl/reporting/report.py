"""What a run shows: ``report.md`` with its figures, and terminal tables (results themselves:
:mod:`cl.core.results`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cl.core.metrics import defined_metrics
from cl.reporting.terminal import print_table
from cl.runtime.io import atomic_write_text

METRIC_LABELS = {
    "average_accuracy": "average accuracy (final row)",
    "average_incremental_accuracy": "average incremental accuracy",
    "forgetting": "forgetting (max-based, Chaudhry 2018)",
    "forgetting_after_training": "forgetting (after training, avalanche)",
    "backward_transfer": "backward transfer (GEM)",
    "forward_transfer": "forward transfer (GEM)",
    "mtil_transfer": "MTIL Transfer",
    "mtil_average": "MTIL Average",
    "mtil_last": "MTIL Last",
    "nevis_average_error": "NEVIS average error",
}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def zero_shot_defined(results: dict[str, Any]) -> bool:
    """Whether the row before training is a zero-shot classifier: the backbone has a text
    tower (``backbone_has_text``; results written before that key: any backbone but ``pixels``)."""
    return bool(results.get("backbone_has_text", results.get("backbone") != "pixels"))


def zero_shot_note(results: dict[str, Any]) -> str:
    """Why the zero-shot row shows "—" (empty when it is a real zero-shot row)."""
    if zero_shot_defined(results) or results.get("zero_shot") is None:
        return ""
    return (f"Zero-shot: — because backbone {results['backbone']!r} has no text tower, so there "
            "is no zero-shot classifier; `results.json` keeps the untrained model's accuracy "
            "before training (`zero_shot`), the reference of forward transfer.")


def _zero_shot_cells(results: dict[str, Any]) -> list[str]:
    if not zero_shot_defined(results):
        return ["—"] * len(results["tasks"])
    return [_pct(v) for v in results["zero_shot"]]


def shown_metrics(results: dict[str, Any]) -> list[str]:
    """The run's metric keys defined for its scenario (:func:`cl.core.metrics.defined_metrics`)."""
    return defined_metrics(results.get("scenario"), list(results["metrics"]))


def matrix_markdown(results: dict[str, Any]) -> str:
    """Accuracy matrix (percent) as a Markdown table, zero-shot row first."""
    names = results["tasks"]
    lines = ["| after \\ task | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    if results.get("zero_shot") is not None:
        lines.append("| zero-shot | " + " | ".join(_zero_shot_cells(results)) + " |")
    for name, row in zip(names, results["accuracy_matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(_pct(v) for v in row) + " |")
    note = zero_shot_note(results)
    return "\n".join(lines) + (f"\n\n{note}" if note else "")


def metrics_markdown(results: dict[str, Any]) -> str:
    """Metric summary (percent points) as a Markdown table (metrics defined for the scenario)."""
    lines = ["| metric | value (%) |", "|---|---:|"]
    for key in shown_metrics(results):
        lines.append(f"| {METRIC_LABELS.get(key, key)} | {_pct(results['metrics'][key])} |")
    return "\n".join(lines)


def compute_markdown(results: dict[str, Any]) -> str:
    """Per-task compute as a Markdown table."""
    keys = ["train_seconds", "eval_seconds", "extract_seconds", "train_examples",
            "backbone_forwards", "train_flops", "trainable_parameters", "memory_bytes"]
    if any("hp_trials" in c for c in results["compute"]):  # NEVIS'22 protocol: all trials counted
        keys.insert(keys.index("train_flops"), "hp_trials")
    lines = ["| task | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, c in zip(results["tasks"], results["compute"], strict=True):
        cells = [f"{c[k]:.3g}" if k in c and c[k] is not None else "—" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out_dir: str | Path, results: dict[str, Any]) -> Path:
    """Write ``report.md`` and the PNG figures of a run; return the report path."""
    from cl.reporting import plots  # matplotlib: only when figures are written

    out_dir = Path(out_dir)
    figures = plots.write_all(results, out_dir)
    if "scores" in results:  # image-text retrieval: every score matrix and its metrics
        from cl.reporting.scores import score_metrics_markdown, scores_markdown

        matrices = [("## Score matrices (%)\n\nRows: after training task t. Columns: task j. "
                    "Metrics of the primary score are those of cl compare."),
                    scores_markdown(results), "## Metrics of every score (%)",
                    score_metrics_markdown(results)]
    else:
        matrices = ["## Accuracy matrix (%)\n\nRows: after training task t. Columns: task j.",
                    matrix_markdown(results), "## Metrics", metrics_markdown(results)]
    text = "\n\n".join([
        f"# {results['stream']} · {results['strategy']} · {results['backbone']}",
        f"seed {results['seed']} · scenario {results['scenario']} · status {results['status']}"
        + (f" · error: {results['error']}" if results.get("error") else "")
        + (" · **results.json was modified after the run (checksum mismatch): unverified**"
           if results.get("integrity") == "modified" else ""),
        *matrices,
        "## Compute per task",
        compute_markdown(results),
        "## Figures",
        "\n".join(f"![{p.stem}]({p.name})" for p in figures),
    ]) + "\n"
    path = out_dir / "report.md"
    atomic_write_text(path, text, root=out_dir)
    return path


def print_results(results: dict[str, Any], console: Console | None = None) -> None:
    """Print the accuracy matrix and the metric summary as terminal tables."""
    console = console or Console()
    names = results["tasks"]
    score = results.get("score", "accuracy")
    table = Table(title=f"{score} (%) — {results['stream']} · {results['strategy']} · "
                        f"{results['backbone']}")
    table.add_column("after \\ task")
    for name in names:
        table.add_column(name, justify="right")
    if results.get("zero_shot") is not None:
        table.add_row("zero-shot", *_zero_shot_cells(results), style="dim")
    for name, row in zip(names, results["accuracy_matrix"], strict=True):
        table.add_row(name, *[_pct(v) for v in row])
    if len(names) <= 20:
        print_table(table, console)
        if zero_shot_note(results):
            console.print(zero_shot_note(results).replace("`", ""), style="dim")
    summary = Table(title="metrics" if score == "accuracy" else f"metrics of {score}")
    summary.add_column("metric")
    summary.add_column("value (%)", justify="right")
    for key in shown_metrics(results):
        label = METRIC_LABELS.get(key, key)
        summary.add_row(label if score == "accuracy" else label.replace("accuracy", score),
                        _pct(results["metrics"][key]))
    print_table(summary, console)
    if "scores" in results:
        from cl.reporting.scores import print_scores

        print_scores(results, console)
