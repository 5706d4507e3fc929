"""``klda`` on split-digits (pixels) with default options."""

from __future__ import annotations

import pytest

import streams


@pytest.mark.slow
def test_default_options_reach_090_on_split_digits(run) -> None:
    """Measured: 0.989."""
    results = run(streams.get("split-digits"), "klda")
    assert results["metrics"]["average_accuracy"] >= 0.90


def test_small_feature_map_on_split_digits(run) -> None:
    results = run(streams.get("split-digits"), "klda", n_components=300)
    assert results["metrics"]["average_accuracy"] >= 0.90
