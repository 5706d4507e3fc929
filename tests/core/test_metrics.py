"""cl.core.metrics pinned to hand-computed matrices (design.md's metric table)."""

import math

import numpy as np
import pytest

from cl.core import metrics

# rows: after training task t; columns: task j
A = np.array([
    [0.90, 0.20, 0.10],
    [0.95, 0.80, 0.50],
    [0.60, 0.50, 0.95],
])
Z = np.array([0.30, 0.10, 0.20])


def test_average_accuracy_is_mean_of_last_row():
    assert metrics.average_accuracy(A) == pytest.approx((0.60 + 0.50 + 0.95) / 3)


def test_average_incremental_accuracy_averages_seen_tasks_per_step():
    expected = (0.90 + (0.95 + 0.80) / 2 + (0.60 + 0.50 + 0.95) / 3) / 3
    assert metrics.average_incremental_accuracy(A) == pytest.approx(expected)


def test_forgetting_uses_the_best_earlier_accuracy_not_the_first():
    # task 0 peaked at 0.95 (after task 1), not at 0.90 right after training
    expected = ((0.95 - 0.60) + (0.80 - 0.50)) / 2
    assert metrics.forgetting(A) == pytest.approx(expected)


def test_forgetting_ignores_accuracies_before_the_task_was_trained():
    # a VLM can score task 1 higher zero-shot (row 0) than after learning it; the drop is
    # measured from the best accuracy once learned (continuum's definition), not from
    # every earlier row as A-GEM's compute_fgt does (that would give (0.95-0.6 + 0.85-0.5)/2)
    B = np.array([[0.90, 0.85, 0.10], [0.95, 0.80, 0.50], [0.60, 0.50, 0.95]])
    assert metrics.forgetting(B) == pytest.approx(((0.95 - 0.60) + (0.80 - 0.50)) / 2)


def test_forgetting_after_training_uses_the_diagonal():
    expected = ((0.90 - 0.60) + (0.80 - 0.50)) / 2
    assert metrics.forgetting_after_training(A) == pytest.approx(expected)
    assert metrics.forgetting_after_training(A) != pytest.approx(metrics.forgetting(A))


def test_backward_transfer_is_minus_forgetting_after_training():
    assert metrics.backward_transfer(A) == pytest.approx(-0.30)


def test_forward_transfer_compares_with_zero_shot_row():
    expected = ((0.20 - 0.10) + (0.50 - 0.20)) / 2
    assert metrics.forward_transfer(A, Z) == pytest.approx(expected)
    assert math.isnan(metrics.forward_transfer(A, None))


def test_mtil_transfer_skips_first_task_and_averages_per_task_first():
    summary = metrics.mtil_summary(A)
    # task 1: mean(A[0,1]) = 0.2; task 2: mean(A[0,2], A[1,2]) = 0.3; task 0 has no entry
    assert summary["transfer"] == pytest.approx((0.20 + 0.30) / 2)
    # a flat mean of the three upper-triangle entries would differ
    assert summary["transfer"] != pytest.approx((0.20 + 0.10 + 0.50) / 3)
    cols = [(0.90 + 0.95 + 0.60) / 3, (0.20 + 0.80 + 0.50) / 3, (0.10 + 0.50 + 0.95) / 3]
    assert summary["average"] == pytest.approx(sum(cols) / 3)
    assert summary["last"] == pytest.approx(metrics.average_accuracy(A))


def test_nevis_average_error_and_curve():
    assert metrics.nevis_average_error(A) == pytest.approx(1 - (0.90 + 0.80 + 0.95) / 3)
    x, err = metrics.nevis_error_curve(A, [1.0, 10.0, 100.0])
    np.testing.assert_allclose(x, [1, 11, 111])
    np.testing.assert_allclose(err, [0.10, (0.10 + 0.20) / 2, (0.10 + 0.20 + 0.05) / 3])


def test_one_task_stream_gives_nan_for_undefined_metrics():
    s = metrics.summarize([[0.7]], [0.4])
    assert s["average_accuracy"] == pytest.approx(0.7)
    assert s["mtil_average"] == pytest.approx(0.7)
    assert s["nevis_average_error"] == pytest.approx(0.3)
    for key in ("forgetting", "forgetting_after_training", "backward_transfer",
                "forward_transfer", "mtil_transfer"):
        assert math.isnan(s[key]), key


def test_nan_entries_are_left_out_of_means():
    B = A.copy()
    B[2, 1] = np.nan  # task 1 never evaluated after the last task
    assert metrics.average_accuracy(B) == pytest.approx((0.60 + 0.95) / 2)
    assert metrics.forgetting(B) == pytest.approx(0.95 - 0.60)
    assert metrics.backward_transfer(B) == pytest.approx(0.60 - 0.90)
    assert math.isnan(metrics.average_accuracy(np.full((2, 2), np.nan)))


def test_summarize_returns_every_metric():
    s = metrics.summarize(A, Z)
    assert set(s) == {
        "average_accuracy", "average_incremental_accuracy", "forgetting",
        "forgetting_after_training", "backward_transfer", "forward_transfer",
        "mtil_transfer", "mtil_average", "mtil_last", "nevis_average_error",
    }
    assert s["mtil_last"] == s["average_accuracy"]


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), np.zeros((0, 0)), np.full((2, 2), 50.0)])
def test_bad_matrices_are_rejected_with_a_clear_error(bad):
    with pytest.raises(ValueError, match="accuracy matrix|fractions"):
        metrics.summarize(bad)


def test_forward_transfer_checks_zero_shot_shape():
    with pytest.raises(ValueError, match="zero-shot vector"):
        metrics.forward_transfer(A, [0.1, 0.2])


def test_forgetting_rows_option_gives_agem_reading():
    # task 1 scored 0.9 before it was learned (row 0), 0.6 right after, 0.5 at the end
    A = np.array([[0.8, 0.9, 0.1], [0.7, 0.6, 0.1], [0.6, 0.5, 0.7]])
    assert metrics.forgetting(A) == pytest.approx(((0.8 - 0.6) + (0.6 - 0.5)) / 2)
    assert metrics.forgetting(A, rows="all") == pytest.approx(((0.8 - 0.6) + (0.9 - 0.5)) / 2)
    with pytest.raises(ValueError, match="'learned' or 'all'"):
        metrics.forgetting(A, rows="max")
