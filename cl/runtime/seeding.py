"""Seeding: one run seed determines every random draw.

Each task ``t`` reseeds python, numpy and torch from ``derive_seed(seed, t)``,
so a run resumed at task ``t`` draws exactly what an uninterrupted run draws, provided
that restoring a strategy's state draws nothing: a restore that builds modules (whose
initial weights the state then overwrites) runs inside :func:`rng_untouched`.

Run seeds are integers in ``[0, MAX_SEED]`` (:func:`check_seed`). Task seeds are
computed modulo the prime ``2**31 - 1``; inside that range ``seed -> derive_seed(seed, t)``
is one-to-one for every ``t`` (multiplication by ``100_003`` is invertible modulo a
prime), so two run seeds never draw the same numbers. Outside it two seeds would fold
onto one (``0`` and ``2**31 - 1`` give identical runs), so they are refused.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: Largest run seed: seeds are folded modulo the prime 2**31 - 1 into task seeds.
MAX_SEED = 2**31 - 2
_MODULUS = 2**31 - 1


def check_seed(seed: int, where: str = "seed") -> int:
    """Return ``seed`` when it is an integer in ``[0, MAX_SEED]``, else raise ``ValueError``
    naming ``where`` (a larger or negative seed would give the same draws as another seed)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{where} must be an integer, got {seed!r}.")
    if not 0 <= seed <= MAX_SEED:
        twin = seed % _MODULUS
        raise ValueError(
            f"{where} must be between 0 and {MAX_SEED} (2**31 - 2), got {seed}: task seeds are "
            f"taken modulo 2**31 - 1, so seed {seed} would draw exactly what seed {twin} draws. "
            f"Use seed {twin} or another seed in range.")
    return seed


def derive_seed(seed: int, task_index: int) -> int:
    """Seed of task ``task_index`` (``-1`` for the zero-shot evaluation) of run ``seed``
    (checked by :func:`check_seed`)."""
    check_seed(seed)
    return (seed * 100_003 + task_index + 1) % _MODULUS


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); return a CPU generator with that seed."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def rng_untouched() -> Iterator[None]:
    """Run the block without moving torch's global CPU (and current CUDA) generator.

    For work whose random draws are thrown away, such as building modules while restoring a
    checkpoint: the fresh run built them at an earlier task, so a resumed run must not draw
    for them now (its later dropout or noise would differ). Python's and numpy's
    generators are not covered.
    """
    import torch

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield


__all__ = ["MAX_SEED", "check_seed", "derive_seed", "rng_untouched", "seed_everything"]
