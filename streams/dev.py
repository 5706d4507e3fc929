"""Dev splits for hyper-parameter selection (the NEVIS'22 protocol).

NEVIS'22 (Bornschein et al., JMLR 2023, §4.2; reference ``deepmind/dm_nevis``,
``dm_nevis/streams/nevis_stream.py``, ``_dataset_splits_for_tfds``) selects
hyper-parameters on a *dev* split. Where a dataset's source has only train and
test splits, the reference cuts the train split into train / dev / dev-test =
70 / 15 / 15 %; where the source also has a validation split, train / dev =
80 / 20 (the validation split is the dev-test); ImageNet 90 / 5 / 5. The
dev-test part serves benchmark development and is never trained on in a
protocol run: the trials train on *train* only.

:func:`with_dev_splits` gives every task without a dev split one carved from its
train split, with the fractions of the task's ``metadata["dev_fractions"]``
(protocol streams such as NEVIS'22 set them per source) or the default
70 / 15 / 15. Tasks that define a dev split (``Task.load_dev``) keep it.

Deviation from the reference, on purpose: the reference slices the train split
contiguously (tfds stores examples shuffled); folder data is ordered by class,
so the carve here is stratified: per class, a seeded permutation, then
``round(f_dev · n_c)`` dev and ``round(f_rest · n_c)`` dev-test items, at least
one dev item for a class of two or more items and at least one train item always.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from streams.core import Stream, Task
from streams.datasets import Relabeled, dataset_labels

#: reference fractions (train, dev, dev-test) for sources with only train and test splits
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """``(train, dev, rest)`` as floats; ``ValueError`` unless three non-negative numbers
    summing to 1 with positive train and dev parts."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(f < 0 for f in values) or abs(sum(values) - 1.0) > 1e-9 \
            or values[0] <= 0 or values[1] <= 0:
        raise ValueError(
            f"dev fractions must be three numbers (train, dev, dev-test) >= 0 summing to 1 with "
            f"train and dev > 0, e.g. [0.7, 0.15, 0.15]; got {list(fractions)}.")
    return values  # type: ignore[return-value]


def carve_indices(labels: np.ndarray, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train / dev / dev-test indices of a train split.

    Parameters
    ----------
    labels : np.ndarray, shape (N,), int
        Labels of the train split.
    fractions : (float, float, float)
        Train, dev and dev-test fractions (see :func:`check_fractions`).
    seed : int
        Seed of ``numpy.random.default_rng``; classes are visited in sorted order.

    Returns
    -------
    train, dev, rest : np.ndarray of int64, sorted, disjoint, covering ``range(N)``
    """
    _, f_dev, f_rest = check_fractions(fractions)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        n_dev = min(max(round(f_dev * n), 1 if n >= 2 else 0), n - 1)
        n_rest = min(round(f_rest * n), n - 1 - n_dev)
        parts[1].append(idx[:n_dev])
        parts[2].append(idx[n_dev:n_dev + n_rest])
        parts[0].append(idx[n_dev + n_rest:])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in parts)  # type: ignore[return-value]


def _carved(task: Task, fractions: tuple[float, float, float], seed: int) -> Task:
    def part(which: int) -> Dataset:
        train = task.load_train()
        labels = dataset_labels(train, load=True)
        idx = carve_indices(labels, fractions, seed)[which]
        return Relabeled(train, idx, labels[idx])

    spec = "/".join(f"{100 * f:g}" for f in fractions)
    return dataclasses.replace(
        task, load_train=lambda: part(0), load_dev=lambda: part(1),
        key=f"{task.key}|carve={spec}&seed={seed}",
        metadata={**task.metadata, "dev_split": f"carved {spec} from train (seed {seed})"},
    )


def with_dev_splits(stream: Stream, *, fractions: Sequence[float] | None = None,
                    seed: int = 0) -> Stream:
    """``stream`` with a dev split on every task (see module docstring).

    Parameters
    ----------
    stream : Stream
    fractions : (float, float, float) or None
        Train / dev / dev-test fractions for tasks without their own
        ``metadata["dev_fractions"]``; default 70 / 15 / 15.
    seed : int
        Seed of the carve.

    Returns
    -------
    Stream
        Same name, scenario and task order; tasks that had a dev split are unchanged,
        the others train on the carved train part.
    """
    default = check_fractions(fractions if fractions is not None else DEFAULT_FRACTIONS)
    tasks = tuple(
        task if task.has_dev else _carved(
            task, check_fractions(task.metadata.get("dev_fractions", default)), seed)
        for task in stream
    )
    return dataclasses.replace(stream, tasks=tasks)


__all__ = ["DEFAULT_FRACTIONS", "carve_indices", "check_fractions", "with_dev_splits"]
