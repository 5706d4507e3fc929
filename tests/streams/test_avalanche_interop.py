"""Avalanche interop with real avalanche objects: to_avalanche / from_avalanche."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import streams
from streams.avalanche_interop import from_avalanche, to_avalanche


def test_round_trip_keeps_tasks_labels_and_class_names():
    s = streams.get("split-digits")
    bench = to_avalanche(s)
    assert len(bench.train_stream) == len(bench.test_stream) == 5
    exp = bench.train_stream[1]
    assert set(exp.classes_in_this_experience) == {2, 3}  # global ids: offset 2 + local
    _, y, t = exp.dataset[0]
    assert y in (2, 3) and t == 0  # class-incremental: one task label
    back = from_avalanche(bench)
    assert back.name == s.name and back.scenario == s.scenario
    assert back.task_names == s.task_names
    assert [t.class_names for t in back] == [t.class_names for t in s]
    assert [t.templates for t in back] == [t.templates for t in s]
    for orig, new in zip(s, back, strict=True):
        for split in ("train", "test"):
            a, b = orig.load(split), new.load(split)
            assert len(a) == len(b)
            assert [a[i][1] for i in range(len(a))] == [b[i][1] for i in range(len(b))]
            assert np.array_equal(np.asarray(a[0][0]), np.asarray(b[0][0]))


def test_task_incremental_streams_get_task_labels():
    s = streams.synthetic_nevis_like(3, 0, max_classes=20, max_train=40)
    bench = to_avalanche(s)
    assert [bench.test_stream[i].dataset[0][2] for i in range(3)] == [0, 1, 2]
    back = from_avalanche(bench)
    assert [t.year for t in back] == [t.year for t in s] and back.scenario == "task-incremental"


def test_from_a_native_avalanche_benchmark():
    from avalanche.benchmarks import nc_benchmark
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

    g = torch.Generator().manual_seed(0)
    ytr, yte = torch.arange(6).repeat(4), torch.arange(6).repeat(2)
    train = _make_taskaware_tensor_classification_dataset(torch.rand(24, 3, generator=g), ytr)
    test = _make_taskaware_tensor_classification_dataset(torch.rand(12, 3, generator=g), yte)
    bench = nc_benchmark(train, test, n_experiences=3, task_labels=False, shuffle=False)
    names = [f"c{i}" for i in range(6)]
    s = from_avalanche(bench, class_names=names, name="native")
    assert len(s) == 3 and s.scenario == "class-incremental"
    assert s[1].class_names == ("c2", "c3")
    data = s[1].load_test()
    assert sorted(data.targets) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="have no class name"):
        from_avalanche(bench, class_names=["a", "b"])


def test_domain_incremental_round_trip_keeps_the_shared_label_space():
    s = streams.get("domain-digits", domains=["original", "inverted"])
    bench = to_avalanche(s)
    assert [set(e.classes_in_this_experience) for e in bench.train_stream] == [set(range(10))] * 2
    assert bench.class_names == [str(c) for c in range(10)]
    back = from_avalanche(bench)
    assert back.scenario == "domain-incremental" and back.n_classes == 10
    assert back.class_offsets == (0, 0)
    for orig, new in zip(s, back, strict=True):
        a, b = orig.load("train"), new.load("train")
        assert [a[i][1] for i in range(len(a))] == [b[i][1] for i in range(len(b))]
        assert np.array_equal(np.asarray(a[3][0]), np.asarray(b[3][0]))


def test_a_native_new_instances_benchmark_reads_as_domain_incremental():
    from avalanche.benchmarks import ni_benchmark
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

    g = torch.Generator().manual_seed(0)
    ytr, yte = torch.arange(3).repeat(8), torch.arange(3).repeat(2)
    train = _make_taskaware_tensor_classification_dataset(torch.rand(24, 2, generator=g), ytr)
    test = _make_taskaware_tensor_classification_dataset(torch.rand(6, 2, generator=g), yte)
    bench = ni_benchmark(train, test, n_experiences=2, task_labels=False, seed=0,
                         balance_experiences=True)
    # avalanche's NI test stream is one experience; pair it with each training experience
    bench.test_stream = [bench.test_stream[0]] * 2
    s = from_avalanche(bench, class_names=["x", "y", "z"], name="ni")
    assert s.scenario == "domain-incremental" and s.n_classes == 3
    assert [t.class_names for t in s] == [("x", "y", "z")] * 2
