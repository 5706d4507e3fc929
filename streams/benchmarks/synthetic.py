"""A synthetic NEVIS-shaped stream, offline and deterministic, for tests and scale benchmarks.

NEVIS'22 (Bornschein et al. 2023) mixes tasks of 2 to ~1000 classes, sizes over
three orders of magnitude, many visual domains, ordered by year. This generator
reproduces that *shape* with tiny grey images (or their pixel vectors):

- class counts in ``[min_classes, max_classes]``, log-uniform skewed towards
  small tasks (``class_skew``; with the default 2 the median task has ~9
  classes, 6 % have more than 500, as NEVIS is mostly small tasks with a few
  1000-class ones), both ends present when ``n_tasks >= 2``;
- training-set sizes log-uniform in ``[min_train, max_train]`` (both ends
  present when ``n_tasks >= 2``; at least one image per class), test sets
  ``test_fraction`` of that, at least one image per class;
- ``n_domains`` domains, each a distinct distribution: its own mean image,
  class spread and noise level; a class is a prototype drawn around its
  domain's mean, an image is its prototype plus noise;
- non-decreasing years in ``[first_year, last_year]``.

The stream plan (counts, sizes, domains, years) is drawn from
``numpy.random.default_rng(seed)``; a task's images from
``default_rng([seed, task_index])`` when the task is loaded.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from streams.arrays import ArrayImageDataset
from streams.core import Stream, Task

TEMPLATES = ("a synthetic pattern of class {}.",)


class VectorDataset(Dataset):
    """Feature vectors with labels: yields ``(tensor of shape (D,), label)``.

    Parameters
    ----------
    X : np.ndarray, shape (N, D), float32
    y : np.ndarray, shape (N,), int64
    """

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X = torch.as_tensor(X, dtype=torch.float32)
        self.targets = [int(v) for v in y]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.X[index], self.targets[index]


def _log_uniform(rng: np.random.Generator, low: int, high: int, n: int,
                 skew: float = 1.0) -> np.ndarray:
    """``exp(log low + (log high - log low) * u**skew)``, ``u ~ U(0, 1)``: log-uniform for
    ``skew=1``; ``skew > 1`` favours small values."""
    u = rng.uniform(0.0, 1.0, n) ** skew
    return np.round(np.exp(np.log(low) + (np.log(high) - np.log(low)) * u)).astype(np.int64)


def _task_arrays(seed: int, index: int, n_classes: int, n_train: int, n_test: int,
                 domain: int, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel values in [0, 1] of shape (N, side, side) and labels, train then test."""
    dom = np.random.default_rng([seed, 10_000 + domain])
    mean = dom.uniform(0.2, 0.8) + 0.25 * dom.standard_normal((side, side))
    spread, noise = dom.uniform(0.1, 0.3), dom.uniform(0.15, 0.35)
    rng = np.random.default_rng([seed, index])
    protos = mean + spread * rng.standard_normal((n_classes, side, side))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, n - n_classes)])
        y = rng.permutation(y)
        x = protos[y] + noise * rng.standard_normal((n, side, side))
        return np.clip(x, 0.0, 1.0).astype(np.float32), y.astype(np.int64)

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return x_tr, y_tr, x_te, y_te


def synthetic_nevis_like(
    n_tasks: int = 100,
    seed: int = 0,
    *,
    min_classes: int = 2,
    max_classes: int = 1000,
    class_skew: float = 2.0,
    min_train: int = 2,
    max_train: int = 2_000,
    test_fraction: float = 0.2,
    n_domains: int = 12,
    image_size: int = 8,
    first_year: int = 1992,
    last_year: int = 2021,
    output: Literal["images", "features"] = "images",
) -> Stream:
    """A NEVIS-shaped task-incremental stream of synthetic tasks.

    Parameters
    ----------
    n_tasks : int
        Number of tasks T.
    seed : int
        Everything is a function of ``seed`` (and the other options).
    min_classes, max_classes : int
        Range of class counts per task (``2 <= min_classes <= max_classes``).
    class_skew : float
        Exponent skewing class counts to small tasks (1: log-uniform); positive.
    min_train, max_train : int
        Range of training-set sizes per task (raised to the class count).
    test_fraction : float
        Test-set size as a fraction of the training size, in (0, 1].
    n_domains : int
        Number of distinct image distributions.
    image_size : int
        Images are ``image_size x image_size`` grey.
    first_year, last_year : int
        Range of the (non-decreasing) task years.
    output : {"images", "features"}
        ``"images"``: datasets of ``(PIL grey image, label)``; ``"features"``:
        ``(float tensor of shape (image_size**2,), label)`` with the same values in [0, 1].

    Returns
    -------
    Stream
        ``"synthetic-nevis"``; each task's metadata holds ``domain``, ``n_train``, ``n_test``.
    """
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be at least 1, got {n_tasks}.")
    if not 2 <= min_classes <= max_classes:
        raise ValueError(f"need 2 <= min_classes <= max_classes, got {min_classes}, {max_classes}.")
    if class_skew <= 0:
        raise ValueError(f"class_skew must be positive, got {class_skew}.")
    if not 1 <= min_train <= max_train:
        raise ValueError(f"need 1 <= min_train <= max_train, got {min_train}, {max_train}.")
    if not 0.0 < test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in (0, 1], got {test_fraction}.")
    if n_domains < 1 or image_size < 1:
        raise ValueError(f"n_domains and image_size must be positive, got {n_domains}, {image_size}.")
    if first_year > last_year:
        raise ValueError(f"first_year {first_year} is after last_year {last_year}.")
    if output not in ("images", "features"):
        raise ValueError(f"output must be 'images' or 'features', got {output!r}.")
    rng = np.random.default_rng(seed)
    classes = _log_uniform(rng, min_classes, max_classes, n_tasks, class_skew)
    sizes = _log_uniform(rng, min_train, max_train, n_tasks)
    if n_tasks >= 2:
        lo, hi = rng.choice(n_tasks, 2, replace=False)
        classes[lo], classes[hi] = min_classes, max_classes
        sizes[lo], sizes[hi] = min_train, max_train
    sizes = np.maximum(sizes, classes)
    tests = np.maximum(np.round(sizes * test_fraction).astype(np.int64), classes)
    domains = rng.integers(0, n_domains, n_tasks)
    years = np.sort(rng.integers(first_year, last_year + 1, n_tasks))
    ident = (f"synthetic-nevis(n_tasks={n_tasks},seed={seed},classes={min_classes}-{max_classes}"
             f"^{class_skew},"
             f"train={min_train}-{max_train},test={test_fraction},domains={n_domains},"
             f"size={image_size},years={first_year}-{last_year})")

    def make(t: int, split: str) -> Dataset:
        x_tr, y_tr, x_te, y_te = _task_arrays(seed, t, int(classes[t]), int(sizes[t]),
                                              int(tests[t]), int(domains[t]), image_size)
        x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
        if output == "features":
            return VectorDataset(x.reshape(len(x), -1), y)
        return ArrayImageDataset(np.round(x * 255.0).astype(np.uint8), y)

    tasks = tuple(
        Task(
            name=f"synthetic-{t:03d}",
            class_names=tuple(f"d{domains[t]} class {c}" for c in range(classes[t])),
            load_train=lambda t=t: make(t, "train"),
            load_test=lambda t=t: make(t, "test"),
            key=f"{ident}/{output}/task{t}",
            year=int(years[t]),
            templates=TEMPLATES,
            metadata={"domain": int(domains[t]), "n_train": int(sizes[t]), "n_test": int(tests[t])},
        )
        for t in range(n_tasks)
    )
    return Stream("synthetic-nevis", tasks, "task-incremental", {"seed": seed, "output": output})


def synthetic_nevis(
    *,
    n_tasks: int = 100,
    seed: int = 0,
    max_classes: int = 1000,
    max_train: int = 2_000,
    n_domains: int = 12,
    output: Literal["images", "features"] = "images",
) -> Stream:
    """Synthetic NEVIS-shaped stream (offline): 2..1000 classes, 2..2000 images, 12 domains."""
    return synthetic_nevis_like(n_tasks, seed, max_classes=max_classes, max_train=max_train,
                                n_domains=n_domains, output=output)
