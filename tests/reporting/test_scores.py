"""An image-text run shows every retrieval matrix: report.md, terminal, figure, cl compare."""

import io
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
from rich.console import Console

from cl.cli import main
from cl.core.tracker import Tracker
from cl.reporting.compare import markdown_table
from cl.reporting.loggers import row_scalars
from cl.reporting.report import print_results
from cl.reporting.runs import load_runs
from cl.reporting.scores import KEY_SCORES, retrieval_heatmaps, score_label


@pytest.fixture(scope="module")
def runs(tmp_path_factory, registered_captions):
    root = tmp_path_factory.mktemp("runs")
    assert main(["run", "--stream", registered_captions, "--backbone", "cl-tiny-vit",
                 "--strategy", "contrastive-ft", "--set", "strategy.iterations=1",
                 "--set", "strategy.batch_size=8", "--set", "stream.n_train=8",
                 "--set", "stream.n_test=4", "--set", "stream.categories=true",
                 "--set", "stream.scenario=class-incremental",
                 "--out", str(root / "pairs"), "--no-progress"]) == 0
    assert main(["run", "--out", str(root / "digits"), "--set", "stream.n_tasks=2",
                 "--no-progress"]) == 0
    return root


def test_report_holds_every_score_matrix_primary_first(runs):
    text = (runs / "pairs" / "report.md").read_text()
    res = json.loads((runs / "pairs" / "results.json").read_text())
    titles = [line for line in text.splitlines() if line.startswith("### ")]
    assert titles[0] == "### mean_recall: mean recall (R@1, 5, 10, both directions) (primary score)"
    assert len(titles) == len(res["scores"]) == 12
    value = res["scores"]["map@5"][1][0]
    assert f"| colours-1 | {100 * value:.1f} |" in text.split("### map@5")[1]
    assert "| BWT |" in text and "![retrieval_matrices](retrieval_matrices.png)" in text
    assert "## Accuracy matrix" not in text


def test_retrieval_heatmaps_start_with_the_zero_shot_row(runs):
    res = json.loads((runs / "pairs" / "results.json").read_text())
    fig = retrieval_heatmaps(res)
    first = fig.axes[0]
    name = next(s for s in KEY_SCORES if s in res["scores"])
    assert first.get_title() == score_label(name)
    labels = [t.get_text() for t in first.get_yticklabels()]
    assert labels == ["zero-shot", *res["tasks"]]
    drawn = first.images[0].get_array()
    np.testing.assert_allclose(drawn[0], 100 * np.array(res["zero_shot_scores"][name]))
    np.testing.assert_allclose(drawn[1:], 100 * np.array(res["scores"][name], dtype=float))
    plt.close(fig)


def test_terminal_names_the_score_and_lists_key_retrieval_scores(runs):
    res = json.loads((runs / "pairs" / "results.json").read_text())
    buf = io.StringIO()
    print_results(res, Console(file=buf, width=200))
    out = buf.getvalue()
    assert "mean_recall (%)" in out and "metrics of mean_recall" in out
    assert "average mean_recall (final row)" in out
    for name in ("i2t_recall@1", "t2i_recall@1", "map@1"):
        final = res["score_metrics"][name]["average_accuracy"]
        assert any(score_label(name) in line and f"{100 * final:.1f}" in line
                   for line in out.splitlines())


def test_compare_shows_retrieval_columns_next_to_accuracy_runs(runs):
    table = markdown_table(load_runs([runs / "pairs", runs / "digits"]))
    headers = [line for line in table.splitlines() if line.startswith("| strategy |")]
    assert len(headers) == 2  # two streams: two protocols, one table each, the same columns
    header = headers[0]
    assert headers[1] == header
    for column in ("avg acc (%)", "mean_recall final (%)", "mean_recall BWT (%)",
                   "map@1 BWT (%)", "i2t_recall@1 final (%)"):
        assert column in header
    digits_row = next(line for line in table.splitlines() if "| nmc |" in line)
    cells = [c.strip() for c in digits_row.split("|")]
    assert cells[header.split("|").index(" mean_recall final (%) ")] == "—"
    only_pairs = markdown_table(load_runs([runs / "pairs"]))
    assert "avg acc" not in next(ln for ln in only_pairs.splitlines() if ln.startswith("|"))
    assert "primary score (mean_recall)" in only_pairs


def test_dashboard_tags_name_the_primary_score():
    tr = Tracker(["a b"], score="mean_recall", scores=("mean_recall",))
    tr.record_scores(0, 0, {"mean_recall": 0.25})
    assert row_scalars(0, tr)["mean_recall/a_b"] == pytest.approx(25.0)
