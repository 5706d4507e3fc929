"""``fecam`` on split-digits (pixels) with default options."""

from __future__ import annotations

import pytest

import strategies
import streams


@pytest.mark.slow
def test_default_options_reach_090_on_split_digits(run) -> None:
    """Measured: 0.987."""
    results = run(streams.get("split-digits"), "fecam")
    assert results["metrics"]["average_accuracy"] >= 0.90


def test_lowrank_variant_on_split_digits(run) -> None:
    results = run(streams.get("split-digits"), "fecam", covariance="lowrank")
    assert results["metrics"]["average_accuracy"] >= 0.90


def test_options_are_validated() -> None:
    with pytest.raises(TypeError, match="covariance"):
        strategies.get("fecam", covariance="full")
    with pytest.raises(ValueError, match="shrink_repeats"):
        strategies.get("fecam", shrink_repeats=-1)
