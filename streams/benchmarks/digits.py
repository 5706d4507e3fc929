"""``split-digits``: scikit-learn's bundled 8×8 digits as a class-incremental stream.

Works offline (the data ships with scikit-learn). 1,797 images of the digits
0–9 are split once into train/test (stratified, ``test_size``, ``seed``), then
the ten classes are cut into ``n_tasks`` tasks of equal size, in natural order
or in a seeded random order, or an explicit one (``class_order_seed``).
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np

from streams.arrays import ArrayImageDataset
from streams.benchmarks.splits import class_order
from streams.core import Stream, Task

TEMPLATES = ("a photo of the digit {}.", "a handwritten digit {}.")


@cache
def _split(seed: int, test_size: float) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits  # scikit-learn: when the data is first read
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return tuple(
        train_test_split(
            images, digits.target, test_size=test_size, random_state=seed, stratify=digits.target
        )
    )


def _subset(seed: int, test_size: float, split: str, classes: tuple[int, ...]) -> ArrayImageDataset:
    x_tr, x_te, y_tr, y_te = _split(seed, test_size)
    x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    mask = np.isin(y, classes)
    local = np.array([classes.index(int(v)) for v in y[mask]], dtype=np.int64)
    return ArrayImageDataset(x[mask], local)


def split_digits(
    *,
    n_tasks: int = 5,
    seed: int = 0,
    test_size: float = 0.3,
    class_order_seed: int | Literal["run"] | list[int] | None = None,
) -> Stream:
    """Split scikit-learn digits into ``n_tasks`` class-incremental tasks.

    Parameters
    ----------
    n_tasks : int
        Number of tasks; must divide 10.
    seed : int
        Seed of the stratified train/test split.
    test_size : float
        Fraction of each class held out for testing, in (0, 1).
    class_order_seed : int, "run", list of int or None
        ``None``: classes in natural order 0..9; an integer: a permutation drawn with
        ``numpy.random.default_rng(class_order_seed)``; a list: an explicit order of
        0..9; ``"run"``: the run seed (resolved by ``cl run``).
    """
    if n_tasks <= 0 or 10 % n_tasks:
        raise ValueError(f"n_tasks must divide 10 (1, 2, 5 or 10), got {n_tasks}.")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}.")
    if isinstance(class_order_seed, int) and not isinstance(class_order_seed, bool):
        order = [int(c) for c in np.random.default_rng(class_order_seed).permutation(10)]
    else:  # None, an explicit list, or "run" (an error outside cl run)
        order = class_order(10, class_order_seed)
    per = 10 // n_tasks
    ident = f"split-digits(n_tasks={n_tasks},seed={seed},test_size={test_size},order={order})"
    tasks = []
    for i in range(n_tasks):
        classes = tuple(order[i * per : (i + 1) * per])
        tasks.append(
            Task(
                name=f"digits-{'-'.join(map(str, classes))}",
                class_names=tuple(str(c) for c in classes),
                load_train=lambda c=classes: _subset(seed, test_size, "train", c),
                load_test=lambda c=classes: _subset(seed, test_size, "test", c),
                key=f"{ident}/task{i}",
                templates=TEMPLATES,
                metadata={"classes": list(classes)},
            )
        )
    return Stream("split-digits", tuple(tasks), "class-incremental", {"class_order": order})
