"""Seeding: a resumed run draws what an uninterrupted one draws, even when restoring state
builds modules (their throw-away initial weights must not move torch's global generator)."""

from __future__ import annotations

import torch
from torch import nn

from cl.runtime.seeding import derive_seed, rng_untouched, seed_everything


def test_building_modules_inside_rng_untouched_leaves_the_next_draws_unchanged() -> None:
    seed_everything(derive_seed(0, 1))
    expected = torch.rand(5)
    seed_everything(derive_seed(0, 1))
    with rng_untouched():
        nn.Linear(64, 64)  # kaiming init: draws from the global generator
    assert torch.equal(torch.rand(5), expected)
    seed_everything(derive_seed(0, 1))
    nn.Linear(64, 64)
    assert not torch.equal(torch.rand(5), expected)  # without it the stream shifts
