"""The references' warm-up + cosine learning-rate factor against its closed form."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from strategies.adaptation.schedule import warmup_cosine_factor
from strategies.lora.base import cosine_factor


def test_linear_warmup_then_half_cosine_to_zero():
    total, warmup = 1000, 100
    assert [warmup_cosine_factor(s, total, warmup) for s in (0, 49, 99)] == [0.01, 0.5, 1.0]
    for s in (100, 300, 550, 999):
        expected = 0.5 * (1 + math.cos(math.pi * (s - 100) / 900))
        assert warmup_cosine_factor(s, total, warmup) == pytest.approx(expected, abs=1e-15)
    # the references' extra step T runs at rate 0 (their loop is range(T + 1))
    assert warmup_cosine_factor(total, total, warmup) == 0.0
    values = [warmup_cosine_factor(s, total, warmup) for s in range(warmup, total)]
    assert all(a >= b for a, b in pairwise(values))


def test_without_warmup_it_is_the_lora_cosine():
    assert all(warmup_cosine_factor(s, 37, 0) == pytest.approx(cosine_factor(s, 37), abs=1e-15)
               for s in range(37))


def test_short_tasks_stay_in_warmup_and_bad_arguments_are_rejected():
    assert [warmup_cosine_factor(s, 10, 100) for s in (0, 9)] == [0.01, 0.1]
    with pytest.raises(ValueError, match="total > 0"):
        warmup_cosine_factor(0, 0, 10)
