"""`cl compare` on real run directories of the offline quickstart (nmc and finetune on split-digits)."""

import json
import shutil

import matplotlib.image
import pytest

from cl.cli import main
from cl.reporting.compare import compare, figure, format_bytes, load_runs
from cl.runtime.integrity import seal


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs: ``nmc`` (no forgetting to speak of) and ``finetune`` (forgets)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for strategy, extra in (("nmc", []), ("finetune", ["--set", "strategy.epochs=5"])):
        out[strategy] = root / strategy
        code = main(["run", "--out", str(out[strategy]), "--no-progress", "--strategy", strategy,
                     "--cache-dir", str(root / "cache"), *extra])
        assert code == 0
    return out


def results(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def table_rows(text):
    """Markdown table → list of dicts keyed by header."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")), strict=True))
            for ln in lines[2:]]


def test_table_has_one_row_per_run_with_metrics_in_percent(runs):
    rows = table_rows(compare([runs["nmc"], runs["finetune"]]))
    assert [r["strategy"] for r in rows] == ["nmc", "finetune"]
    for row, name in zip(rows, ("nmc", "finetune"), strict=True):
        res = results(runs[name])
        assert row["run"] == name and row["stream"] == "split-digits" and row["backbone"] == "pixels"
        assert row["seed"] == "0" and row["tasks"] == "5/5"
        assert row["avg acc (%)"] == f"{100 * res['metrics']['average_accuracy']:.1f}"
        assert row["MTIL Transfer (%)"] == f"{100 * res['metrics']['mtil_transfer']:.1f}"
        assert row["train s"] == f"{sum(c['train_seconds'] for c in res['compute']):.3g}"
        assert row["memory"] == format_bytes(res["compute"][-1]["memory_bytes"])
    # the table shows what a reader compares: finetune forgets, nmc does not
    assert float(rows[1]["forgetting (%)"]) > float(rows[0]["forgetting (%)"]) + 30


def test_cli_writes_markdown_and_plot(runs, tmp_path, capsys):
    md, png = tmp_path / "cmp" / "table.md", tmp_path / "cmp" / "fig.png"
    code = main(["compare", str(runs["nmc"]), str(runs["finetune"]), "--out", str(md), "--plot", str(png)])
    assert code == 0
    printed = capsys.readouterr().out
    text = md.read_text()
    assert "| nmc | split-digits | nmc |" in text and "| finetune | split-digits | finetune |" in text
    assert "![comparison](fig.png)" in text  # the figure is linked relative to the Markdown
    assert text.split("![")[0].strip() in printed
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400


def test_figure_draws_each_run(runs):
    summaries = load_runs([runs["nmc"], runs["finetune"]])
    fig = figure(summaries)
    bars, scatter = fig.axes
    assert [t.get_text() for t in bars.get_xticklabels()] == ["nmc", "finetune"]
    accuracy_bars = bars.containers[0]
    expected = [100 * results(runs[n])["metrics"]["average_accuracy"] for n in ("nmc", "finetune")]
    assert [b.get_height() for b in accuracy_bars] == pytest.approx(expected)
    xs = [c.get_offsets()[0][0] for c in scatter.collections]
    assert xs == pytest.approx([results(runs[n])["compute"][-1]["memory_bytes"] for n in ("nmc", "finetune")])
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_metrics_option_selects_columns(runs, capsys):
    assert main(["compare", str(runs["nmc"]), "--metrics", "average_accuracy,forgetting"]) == 0
    header = capsys.readouterr().out.splitlines()[2]
    assert "avg acc (%)" in header and "forgetting (%)" in header and "MTIL" not in header
    assert main(["compare", str(runs["nmc"]), "--metrics", "accuracy"]) == 2
    assert "unknown metric(s) 'accuracy'" in capsys.readouterr().err


def test_same_directory_names_get_distinct_labels(runs, tmp_path):
    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    shutil.copytree(runs["nmc"], a)
    shutil.copytree(runs["finetune"], b)
    assert [r.label for r in load_runs([a, b])] == ["a/run", "b/run"]


def test_unfinished_run_counts_only_finished_tasks(runs, tmp_path):
    run = tmp_path / "partial"
    shutil.copytree(runs["finetune"], run)
    res = results(run)
    res["status"], res["completed_tasks"] = "failed", 3
    (run / "results.json").write_text(json.dumps(seal(res)))  # as a failed run writes it
    (row,) = table_rows(compare([run]))
    assert row["tasks"] == "3/5 (failed)"
    assert row["train s"] == f"{sum(c['train_seconds'] for c in res['compute'][:3]):.3g}"
    assert row["memory"] == format_bytes(res["compute"][2]["memory_bytes"])


def test_bad_inputs_are_clear_errors(runs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", str(empty)]) == 2
    assert "is '" + str(empty) + "' a run directory?" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{")
    assert main(["compare", str(broken)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    (broken / "results.json").write_text(json.dumps({"accuracy": 0.5}))
    assert main(["compare", str(broken)]) == 2
    assert "is not a cl run result: it lacks stream" in capsys.readouterr().err
    md = tmp_path / "t.md"
    assert main(["compare", str(runs["nmc"]), "--plot", str(tmp_path / "f.jpg"), "--out", str(md)]) == 2
    assert "must end in .png, .pdf, .svg" in capsys.readouterr().err
    assert not md.exists() and not (tmp_path / "f.jpg").exists()
