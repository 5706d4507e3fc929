"""`cl compare` on real run directories of the offline quickstart: seeds aggregated (mean ± sample
std, n), strategy options shown, CSV and per-seed rows, metrics a scenario leaves undefined hidden."""

import csv
import io
import json
import shutil

import matplotlib.colors
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import BarContainer

from cl.cli import main
from cl.reporting.compare import compare, csv_table, load_runs, select
from cl.reporting.compare_plot import figure
from cl.runtime.integrity import seal

TWO_TASKS = ["--set", "stream.n_tasks=2", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """nmc (seed 0), finetune (seeds 0 and 1: a group of two) and gda at two shrinkages."""
    root = tmp_path_factory.mktemp("runs")
    specs = {
        "nmc": ["--strategy", "nmc"],
        "ft-0": ["--strategy", "finetune", "--set", "strategy.epochs=3", "--seed", "0"],
        "ft-1": ["--strategy", "finetune", "--set", "strategy.epochs=3", "--seed", "1"],
        "gda-0.1": ["--strategy", "gda", "--set", "strategy.shrinkage=0.1"],
        "gda-0.5": ["--strategy", "gda", "--set", "strategy.shrinkage=0.5"],
    }
    for name, args in specs.items():
        assert main(["run", "--out", str(root / name), "--cache-dir", str(root / "cache"),
                     *TWO_TASKS, *args]) == 0
    return root


def results(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def test_seeds_are_aggregated_to_mean_and_sample_std(runs, table_rows):
    rows = table_rows(compare([runs / "ft-0", runs / "ft-1", runs / "nmc"]))
    assert [(r["strategy"], r["n"], r["seeds"]) for r in rows] == [("finetune", "2", "0,1"),
                                                                   ("nmc", "1", "0")]
    ft, nmc = rows
    for key, header in (("average_accuracy", "avg acc (%)"), ("forgetting", "forgetting (%)")):
        values = np.array([results(runs / f"ft-{s}")["metrics"][key] for s in (0, 1)])
        assert values[0] != values[1]  # the seeds really differ
        assert ft[header] == f"{100 * values.mean():.1f} ± {100 * values.std(ddof=1):.1f}"
        assert nmc[header] == f"{100 * results(runs / 'nmc')['metrics'][key]:.1f}"  # n = 1: no std
    seconds = [sum(c["train_seconds"] for c in results(runs / f"ft-{s}")["compute"]) for s in (0, 1)]
    assert ft["train s"] == f"{np.mean(seconds):.3g}"
    assert ft["options"] == "epochs=3" and nmc["options"] == "—"


def test_two_settings_of_one_strategy_are_two_rows_with_their_options(runs, table_rows):
    rows = table_rows(compare([runs / "gda-0.1", runs / "gda-0.5"]))
    assert [(r["strategy"], r["options"], r["n"]) for r in rows] == [
        ("gda", "shrinkage=0.1", "1"), ("gda", "shrinkage=0.5", "1")]
    merged = table_rows(compare([runs / "gda-0.1", runs / "gda-0.5"],
                                over=("seed", "strategy.shrinkage")))
    assert len(merged) == 1 and merged[0]["n"] == "2"


def test_class_incremental_runs_show_no_mtil_metrics(runs):
    text = compare([runs / "nmc"])
    assert "MTIL" not in text and "avg acc (%)" in text
    assert results(runs / "nmc")["metrics"]["mtil_transfer"] == 0.0  # 0 by construction, hidden
    fig = figure(load_runs([runs / "nmc", runs / "ft-0"]))
    bars = fig.axes[0]
    assert [t.get_text() for t in bars.get_legend().get_texts()] == ["avg acc", "forgetting"]
    plt.close(fig)


def test_per_seed_rows_and_csv_hold_the_same_numbers(runs, tmp_path, table_rows):
    text = compare([runs / "ft-0", runs / "ft-1"], per_seed=True)
    rows = table_rows(text)
    assert [r["strategy"] for r in rows] == ["finetune", "↳ seed 0", "↳ seed 1"]
    assert rows[1]["options"] == "ft-0" and rows[2]["options"] == "ft-1"
    table = list(csv.DictReader(io.StringIO(csv_table(load_runs([runs / "ft-0", runs / "ft-1"]),
                                                      per_seed=True))))
    assert [r["row"] for r in table] == ["mean", "seed", "seed"]
    acc = np.array([results(runs / f"ft-{s}")["metrics"]["average_accuracy"] for s in (0, 1)])
    assert float(table[0]["average_accuracy_mean"]) == pytest.approx(acc.mean(), abs=1e-15)
    assert float(table[0]["average_accuracy_std"]) == pytest.approx(acc.std(ddof=1), abs=1e-15)
    assert [float(r["average_accuracy_mean"]) for r in table[1:]] == pytest.approx(acc.tolist())
    assert "mtil_transfer_mean" not in table[0]


def test_a_directory_of_runs_stands_for_all_of_them(runs, table_rows):
    assert len(load_runs([runs])) == 5
    rows = table_rows(compare([runs]))
    assert {(r["strategy"], r["n"]) for r in rows} == {("nmc", "1"), ("finetune", "2"),
                                                      ("gda", "1")}


def test_cli_writes_markdown_csv_and_plot(runs, tmp_path, capsys):
    md, png, table = tmp_path / "cmp" / "table.md", tmp_path / "cmp" / "fig.png", tmp_path / "t.csv"
    code = main(["compare", str(runs / "ft-0"), str(runs / "ft-1"), str(runs / "nmc"), "--out",
                 str(md), "--plot", str(png), "--csv", str(table)])
    assert code == 0
    printed = capsys.readouterr().out
    text = md.read_text()
    assert "| finetune | epochs=3 | 2 | 0,1 |" in text
    assert "## P1: stream split-digits (n_tasks=2, seed=0, test_size=0.3); class order natural" \
        in text
    assert "![comparison](fig.png)" in text  # the figure is linked relative to the Markdown
    assert text.split("![")[0].strip() in printed
    assert len(list(csv.DictReader(table.open()))) == 2
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400


def test_figure_draws_group_means_with_std_error_bars(runs):
    summaries = load_runs([runs / "ft-0", runs / "ft-1", runs / "nmc"])
    fig = figure(summaries)
    bars, scatter = fig.axes
    accuracy = next(c for c in bars.containers if isinstance(c, BarContainer))
    ft = np.array([results(runs / f"ft-{s}")["metrics"]["average_accuracy"] for s in (0, 1)])
    nmc = results(runs / "nmc")["metrics"]["average_accuracy"]
    assert [b.get_height() for b in accuracy] == pytest.approx([100 * ft.mean(), 100 * nmc])
    (segments,) = accuracy.errorbar.lines[2]
    ft_bar, nmc_bar = segments.get_segments()
    assert abs(ft_bar[1][1] - ft_bar[0][1]) == pytest.approx(2 * 100 * ft.std(ddof=1))
    assert len(nmc_bar) == 0  # n = 1: no error bar (not a bar of 0)
    assert "finetune\nepochs=3" in [t.get_text() for t in bars.get_xticklabels()]
    assert len(scatter.containers) == 2  # one point with its error bar per group
    assert scatter.get_ylim()[0] == 0  # accuracy from 0: distances read true
    bar_colours = {tuple(c.patches[0].get_facecolor()) for c in bars.containers
                   if isinstance(c, BarContainer)}
    point_colours = {tuple(matplotlib.colors.to_rgba(c.lines[0].get_color()))
                     for c in scatter.containers}
    assert point_colours == {(0.0, 0.0, 0.0, 1.0)} and not point_colours & bar_colours
    plt.close(fig)


def test_metrics_option_selects_columns(runs, capsys):
    assert main(["compare", str(runs / "nmc"), "--metrics", "average_accuracy,forgetting"]) == 0
    header = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("|"))
    assert "avg acc (%)" in header and "forgetting (%)" in header and "BWT" not in header
    assert main(["compare", str(runs / "nmc"), "--metrics", "accuracy"]) == 2
    assert "unknown metric(s) 'accuracy'" in capsys.readouterr().err


def test_same_directory_names_get_distinct_labels(runs, tmp_path):
    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    shutil.copytree(runs / "nmc", a)
    shutil.copytree(runs / "ft-0", b)
    assert [r.label for r in load_runs([a, b])] == ["a/run", "b/run"]


def test_an_unfinished_run_is_listed_apart_with_its_state_never_averaged(runs, tmp_path, table_rows, tables):
    run = tmp_path / "partial"
    shutil.copytree(runs / "ft-1", run)
    res = results(run)
    res["status"], res["completed_tasks"], res["error"] = "failed", 1, "ValueError: boom"
    (run / "results.json").write_text(json.dumps(seal(res)))  # as a failed run writes it
    text = compare([runs / "ft-0", run])
    (row,) = table_rows(text)
    assert (row["strategy"], row["n"], row["seeds"]) == ("finetune", "1", "0")
    acc = results(runs / "ft-0")["metrics"]["average_accuracy"]
    assert row["avg acc (%)"] == f"{100 * acc:.1f}"  # the failed run's number is not in it
    (listed,) = tables(text)["Not aggregated: unfinished runs"]
    assert (listed["run"], listed["status"], listed["tasks"], listed["seed"]) == \
        ("partial", "failed", "1/2", "1")
    assert listed["error"] == "ValueError: boom"
    fig = figure(select([runs / "ft-0", run]))
    bars = fig.axes[0]
    assert "1 unfinished run not drawn" in bars.get_title()
    assert [t.get_text() for t in bars.get_xticklabels()] == ["finetune\nepochs=3"]
    plt.close(fig)


def test_feature_extraction_seconds_are_their_own_column_when_recorded(runs, tmp_path, table_rows):
    assert "extract s" in compare([runs / "nmc"])  # the runner records it
    run = tmp_path / "timed"
    shutil.copytree(runs / "nmc", run)
    res = results(run)
    for c in res["compute"]:
        c.pop("extract_seconds", None)  # as a run from before extraction was timed apart
    (run / "results.json").write_text(json.dumps(seal(res)))
    assert "extract s" not in compare([run])  # not recorded: no column
    for c, seconds in zip(res["compute"], (1.5, 0.25), strict=True):
        c["extract_seconds"] = seconds  # as a run that times its feature extraction records it
    (run / "results.json").write_text(json.dumps(seal(res)))
    (row,) = table_rows(compare([run]))
    assert row["extract s"] == "1.75"
    assert row["train s"] == f"{sum(c['train_seconds'] for c in res['compute']):.3g}"


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
    assert main(["compare", str(runs / "nmc"), "--plot", str(tmp_path / "f.jpg"), "--out", str(md)]) == 2
    assert "must end in .png, .pdf, .svg" in capsys.readouterr().err
    assert not md.exists() and not (tmp_path / "f.jpg").exists()
