"""What a run prints and writes: no zero-shot numbers without a text tower, only the metrics the
scenario defines, tables that are never cut at 80 columns."""

import copy
import io

from rich.console import Console

from cl.reporting.report import matrix_markdown, metrics_markdown, print_results


def test_a_backbone_without_text_tower_shows_no_zero_shot_numbers(nmc_results):
    assert nmc_results["backbone_has_text"] is False and nmc_results["zero_shot"][0] > 0  # untrained
    text = matrix_markdown(nmc_results)
    assert "| zero-shot | — | — |" in text
    assert "backbone 'pixels' has no text tower" in text
    vlm = copy.deepcopy(nmc_results)
    vlm["backbone_has_text"] = True
    assert f"| zero-shot | {100 * vlm['zero_shot'][0]:.1f} |" in matrix_markdown(vlm)
    assert "no text tower" not in matrix_markdown(vlm)


def test_metrics_undefined_for_the_scenario_are_not_shown(nmc_results):
    assert nmc_results["scenario"] == "class-incremental"
    assert "mtil_transfer" in nmc_results["metrics"]  # results.json keeps every metric
    assert "MTIL" not in metrics_markdown(nmc_results)
    task_incremental = dict(nmc_results, scenario="task-incremental")
    assert "MTIL Transfer" in metrics_markdown(task_incremental)


def test_terminal_tables_keep_long_names_off_a_terminal(nmc_results):
    res = copy.deepcopy(nmc_results)
    res["tasks"] = ["synthetic-nevis-task-with-a-long-name-000", "synthetic-nevis-task-with-a-long-name-001"]
    buf = io.StringIO()
    print_results(res, Console(file=buf, width=80))  # not a terminal: a pipe, a log file
    out = buf.getvalue()
    assert "synthetic-nevis-task-with-a-long-name-001" in out and "…" not in out
    assert max(len(line) for line in out.splitlines()) > 80
