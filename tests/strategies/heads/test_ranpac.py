"""``ranpac`` on split-digits (pixels): accuracy, registration, resume state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import strategies
import streams


def test_registered_with_validated_options() -> None:
    assert {"ranpac", "fecam", "rail", "klda"} <= set(strategies.available())
    assert strategies.get("ranpac", ridge=0.5).model.alpha == 0.5
    with pytest.raises(TypeError, match="dtype"):
        strategies.get("ranpac", dtype="float16")


def test_small_projection_learns_split_digits_and_resumes(run) -> None:
    results = run(streams.get("split-digits"), "ranpac", n_components=1000)
    assert results["metrics"]["average_accuracy"] >= 0.95
    assert results["metrics"]["forgetting"] <= 0.05


@pytest.mark.slow
def test_default_options_reach_095_on_split_digits(run) -> None:
    """Paper defaults (M = 10,000, λ chosen per task); no tuning. Measured: 0.985."""
    results = run(streams.get("split-digits"), "ranpac")
    assert results["metrics"]["average_accuracy"] >= 0.95


def test_state_dict_round_trip() -> None:
    rng = np.random.default_rng(0)
    a = strategies.get("ranpac", n_components=50)
    a.model.partial_fit(rng.normal(size=(40, 8)), np.repeat([0, 1], 20))
    b = strategies.get("ranpac", n_components=50)
    b.load_state_dict(a.state_dict())
    x = rng.normal(size=(5, 8))
    np.testing.assert_array_equal(b.model.class_scores(x), a.model.class_scores(x))
    assert all(isinstance(v, (torch.Tensor, int, float)) for v in a.state_dict()["stats"].values())


def test_records_condition_number_and_warns_when_ill_conditioned(run, caplog) -> None:
    """λ = 1e-8 with fewer samples than random features: ``G + λI`` has eigenvalues λ, so the
    primal system is ill conditioned; the dual form of the same data is not."""
    stream = streams.get("split-digits")  # 1,257 training images < M = 1,500
    primal = run(stream, "ranpac", n_components=1500, ridge=1e-8, solver="primal")
    conds = [r["condition_number"] for r in primal["records"]]
    assert all(c > 1e12 for c in conds)
    assert "condition number" in caplog.text and "strategy.ridge" in caplog.text
    caplog.clear()
    dual = run(stream, "ranpac", n_components=1500, ridge=1e-8, solver="dual")
    assert all(r["condition_number"] < 1e12 for r in dual["records"])
    assert "condition number" not in caplog.text
    assert dual["metrics"]["average_accuracy"] >= 0.9
