"""The synthetic NEVIS-shaped stream: deterministic, NEVIS-like shape, offline."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import streams
from streams import synthetic_nevis_like


def _pixels(task, split: str = "train") -> np.ndarray:
    ds = task.load(split)
    return np.stack([np.asarray(ds[i][0], dtype=np.float64) for i in range(len(ds))])


def test_deterministic_per_seed():
    a, b, c = synthetic_nevis_like(100, 3), synthetic_nevis_like(100, 3), synthetic_nevis_like(100, 4)
    assert [t.class_names for t in a] == [t.class_names for t in b]
    assert [(t.year, t.key, dict(t.metadata)) for t in a] == [(t.year, t.key, dict(t.metadata))
                                                              for t in b]
    assert [t.n_classes for t in a] != [t.n_classes for t in c]
    for j in (0, 57):
        x, y = a[j].load_test(), b[j].load_test()
        assert np.array_equal(x.images, y.images) and np.array_equal(x.labels, y.labels)


def test_nevis_like_shape():
    s = synthetic_nevis_like(100, 0)
    counts = [t.n_classes for t in s]
    sizes = [t.metadata["n_train"] for t in s]
    assert min(counts) == 2 and max(counts) == 1000
    assert max(sizes) / min(sizes) >= 1000  # three orders of magnitude
    assert len({t.metadata["domain"] for t in s}) >= 8
    years = [t.year for t in s]
    assert years == sorted(years) and 1992 <= years[0] and years[-1] <= 2021
    assert s.scenario == "task-incremental" and len(set(s.task_names)) == 100
    small = min(s, key=lambda t: t.n_classes)
    train, test = small.load_train(), small.load_test()
    assert len(train) == small.metadata["n_train"] and len(test) == small.metadata["n_test"]
    assert set(train.labels.tolist()) == set(test.labels.tolist()) == {0, 1}
    image, _ = train[0]
    assert isinstance(image, Image.Image) and image.size == (8, 8) and image.mode == "L"


def test_domains_are_distinct_distributions():
    s = synthetic_nevis_like(60, 1, n_domains=3)
    big = [t for t in s if t.n_classes >= 50]
    means = {}
    for t in big:
        means.setdefault(t.metadata["domain"], []).append(_pixels(t, "test").mean(axis=0))
    within = [np.abs(m[0] - m[1]).mean() for m in means.values() if len(m) >= 2]
    doms = sorted(means)
    between = [np.abs(means[a][0] - means[b][0]).mean() for a in doms for b in doms if a < b]
    assert within and between and max(within) < min(between)


def test_features_output_matches_the_images():
    img = synthetic_nevis_like(5, 2)[1].load_train()
    feat = synthetic_nevis_like(5, 2, output="features")[1].load_train()
    x, y = feat[3]
    assert x.shape == (64,) and y == img[3][1]
    assert np.allclose(x.numpy() * 255.0, img.images[3].reshape(-1), atol=0.5)


def test_registered_stream_and_bad_options():
    s = streams.get("synthetic-nevis", n_tasks=7, seed=1)
    assert len(s) == 7
    with pytest.raises(ValueError, match="has no option 'tasks'"):
        streams.get("synthetic-nevis", tasks=7)
    with pytest.raises(ValueError, match="min_classes"):
        synthetic_nevis_like(3, 0, min_classes=1)
    with pytest.raises(ValueError, match="n_tasks"):
        synthetic_nevis_like(0, 0)
