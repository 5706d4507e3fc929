"""Seeding: one run seed determines every random draw.

Each task ``t`` reseeds python, numpy and torch from ``derive_seed(seed, t)``,
so a run resumed at task ``t`` draws exactly what an uninterrupted run draws.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def derive_seed(seed: int, task_index: int) -> int:
    """Seed of task ``task_index`` (``-1`` for the zero-shot evaluation)."""
    return (seed * 100_003 + task_index + 1) % (2**31 - 1)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (CPU and CUDA); return a CPU generator with that seed."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.Generator().manual_seed(seed)
