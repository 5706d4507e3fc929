"""Dev splits carved from train splits (NEVIS'22 protocol): stratified, disjoint, deterministic."""

import numpy as np
import pytest

import streams
from streams.dev import carve_indices, check_fractions, with_dev_splits


def test_carve_is_a_stratified_partition_with_the_reference_fractions():
    labels = np.repeat(np.arange(4), [100, 40, 7, 1])
    train, dev, rest = carve_indices(labels, (0.7, 0.15, 0.15), seed=0)
    assert np.array_equal(np.sort(np.concatenate([train, dev, rest])), np.arange(len(labels)))
    assert not set(train) & set(dev) and not set(dev) & set(rest)
    counts = {name: np.bincount(labels[idx], minlength=4)
              for name, idx in (("train", train), ("dev", dev), ("rest", rest))}
    # per class: round(0.15 n) dev and dev-test items, the rest trains; a single item always trains
    assert counts["dev"].tolist() == [15, 6, 1, 0] and counts["rest"].tolist() == [15, 6, 1, 0]
    assert counts["train"].tolist() == [70, 28, 5, 1]
    again = carve_indices(labels, (0.7, 0.15, 0.15), seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, dev, rest), strict=True))
    assert not np.array_equal(carve_indices(labels, (0.7, 0.15, 0.15), seed=1)[1], dev)
    _, dev80, rest80 = carve_indices(labels, (0.8, 0.2, 0.0), seed=0)
    assert len(rest80) == 0 and np.bincount(labels[dev80]).tolist() == [20, 8, 1]
    with pytest.raises(ValueError, match="summing to 1"):
        check_fractions((0.7, 0.2, 0.2))


def test_with_dev_splits_gives_every_task_a_dev_split_from_its_train_split():
    s = streams.get("split-digits", n_tasks=2)
    carved = with_dev_splits(s)
    assert carved.task_names == s.task_names and carved.scenario == s.scenario
    for orig, task in zip(s, carved, strict=True):
        full, train, dev = orig.load_train(), task.load_train(), task.load("dev")
        assert task.has_dev and task.key != orig.key and "carve=70/15/15&seed=0" in task.key
        assert 0.69 < len(train) / len(full) < 0.71 and 0.14 < len(dev) / len(full) < 0.16
        pixels = {np.asarray(full[i][0]).tobytes(): full[i][1] for i in range(len(full))}
        for ds in (train, dev):  # carved items are items of the train split, labels kept
            assert all(pixels[np.asarray(ds[i][0]).tobytes()] == ds[i][1] for i in range(len(ds)))
        assert not {np.asarray(train[i][0]).tobytes() for i in range(len(train))} & \
            {np.asarray(dev[i][0]).tobytes() for i in range(len(dev))}
    assert with_dev_splits(carved)[0] is carved[0]  # a task with a dev split keeps it
