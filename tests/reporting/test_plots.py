"""Run figures a reviewer reads: whole-number steps, the mean line from the zero-shot step when
there is one, overlapping lines kept visible, titles and units that say what is plotted."""

import copy

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cl.reporting import plots


@pytest.fixture()
def results(nmc_results):
    return copy.deepcopy(nmc_results)


@pytest.fixture()
def drawn(monkeypatch, tmp_path):
    """Call a plot function and return its figure (before it is closed)."""
    figures = []

    def save(fig, path):
        figures.append(fig)
        return path

    monkeypatch.setattr(plots, "_save", save)

    def draw(function, res):
        function(res, tmp_path / "f.png")
        return figures[-1].axes[0]

    yield draw
    plt.close("all")


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_accuracy_over_time_without_a_text_tower_starts_at_the_first_task(results, drawn):
    ax = drawn(plots.accuracy_over_time, results)
    assert list(ax.get_xticks()) == [1, 2]  # whole tasks, no half steps
    mean = _lines(ax)["mean over all tasks"]
    A = np.array(results["accuracy_matrix"], dtype=float)
    np.testing.assert_allclose(mean.get_ydata(), 100 * np.nanmean(A, axis=1))
    assert list(mean.get_xdata()) == [1, 2]
    first, second = (_lines(ax)[name] for name in results["tasks"])
    assert first.get_linewidth() > second.get_linewidth()  # equal lines stay visible
    assert ax.get_ylim()[1] > 100 and ax.get_ylim()[0] < 0
    assert list(second.get_xdata()) == [2]  # solid from the step that learns the task


def test_the_zero_shot_row_is_step_0_of_every_line_and_of_the_mean(results, drawn):
    vlm = copy.deepcopy(results)
    vlm["backbone_has_text"] = True
    ax = drawn(plots.accuracy_over_time, vlm)
    assert list(ax.get_xticks()) == [0, 1, 2]
    mean = _lines(ax)["mean over all tasks"]
    assert list(mean.get_xdata()) == [0, 1, 2]
    assert mean.get_ydata()[0] == pytest.approx(100 * np.mean(vlm["zero_shot"]))
    assert "0: zero-shot" in ax.get_xlabel()


def test_error_vs_compute_names_its_stream_and_counts_hp_trials(results, drawn):
    ax = drawn(plots.error_vs_compute, results)
    assert ax.get_title() == "split-digits · nmc: error vs compute" and "NEVIS" not in ax.get_title()
    searched = copy.deepcopy(results)
    for c in searched["compute"]:
        c.update(hp_trials=4.0, train_flops=1e6)
    ax = drawn(plots.error_vs_compute, searched)
    assert ax.get_xlabel() == "cumulative training FLOPs (all 4 hp trials per task)"
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [1e6, 2e6])


def test_accuracy_and_memory_per_task_read_in_a_fitting_unit(results, drawn):
    ax = drawn(plots.accuracy_vs_memory, results)
    memory_ax = ax.figure.axes[1]
    memory = np.array([c["memory_bytes"] for c in results["compute"]])
    assert 1024 <= memory.max() < 1024**2
    assert memory_ax.get_ylabel() == "memory carried (KiB)" and memory_ax.get_ylim()[0] == 0
    assert [b.get_height() for b in memory_ax.patches] == pytest.approx(list(memory / 1024))
    A = np.array(results["accuracy_matrix"], dtype=float)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [100 * A[0, 0], 100 * A[1].mean()])
    assert list(memory_ax.get_xticks()) == [1, 2] and "constant" not in ax.get_title()


def test_a_constant_memory_is_bars_of_one_height_not_a_vertical_line(results, drawn):
    for c in results["compute"]:
        c["memory_bytes"] = 3 * 1024**2
    ax = drawn(plots.accuracy_vs_memory, results)
    assert ax.get_title().endswith("(memory constant: 3 MiB)")
    assert len(set(ax.get_lines()[0].get_xdata())) == 2  # accuracy over tasks, not over memory
    assert [b.get_height() for b in ax.figure.axes[1].patches] == [3.0, 3.0]
