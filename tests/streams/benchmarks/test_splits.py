"""Class-incremental splits (split-folder, split-imagenet-r, split-cifar100 definition)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import streams
from streams.benchmarks.splits import class_order, task_classes

CLASSES = ["ant", "bee", "cat", "dog", "eel", "fox"]


def _folder(root: Path, classes: list[str], per_class: int) -> None:
    rng = np.random.default_rng(1)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            arr = np.full((8, 8), 40 * k, dtype=np.uint8) + rng.integers(0, 5, (8, 8), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")


def test_split_folder_gives_the_right_class_partition(tmp_path):
    _folder(tmp_path / "data", CLASSES, per_class=5)
    s = streams.get("split-folder", root=str(tmp_path / "data"), n_tasks=3)
    assert s.scenario == "class-incremental"
    assert [t.class_names for t in s] == [("ant", "bee"), ("cat", "dog"), ("eel", "fox")]
    task = s[1]
    train, test = task.load_train(), task.load_test()
    assert len(train) == 8 and len(test) == 2  # 20 % of 5 images per class
    assert sorted(set(train.targets)) == [0, 1] and sorted(test.targets) == [0, 1]
    assert not {p.name + p.parent.name for p in train.paths} & {p.name + p.parent.name
                                                               for p in test.paths}
    _, label = test[0]
    assert Path(test.paths[0]).parent.name == task.class_names[label]
    # class ids are global: task 1's classes come after task 0's
    assert s.class_offsets == (0, 2, 4)
    assert s.eval_label_space(0, 2).class_names == tuple(CLASSES)


def test_split_folder_class_order_seed_and_train_test_layout(tmp_path):
    for split, n in (("train", 3), ("test", 1)):
        _folder(tmp_path / "d" / split, CLASSES, per_class=n)
    s = streams.get("split-folder", root=str(tmp_path / "d"), n_tasks=2, class_order_seed=7)
    order = np.random.RandomState(7).permutation(6).tolist()
    assert [t.class_names for t in s] == [tuple(CLASSES[c] for c in order[:3]),
                                          tuple(CLASSES[c] for c in order[3:])]
    assert len(s[0].load_train()) == 9 and len(s[0].load_test()) == 3


def test_cifar100_seed_1993_order_is_the_common_one(tmp_path):
    # first classes of the iCaRL/PyCIL order: np.random.seed(1993); np.random.permutation(100)
    assert class_order(100, 1993)[:10] == [68, 56, 78, 8, 23, 84, 90, 65, 74, 76]
    s = streams.get("split-cifar100", n_tasks=20, data_root=str(tmp_path))
    assert len(s) == 20 and all(t.n_classes == 5 for t in s)
    assert s[0].class_names[0] == "road"  # CIFAR-100 fine label 68
    natural = streams.get("split-cifar100", class_order_seed=None, data_root=str(tmp_path))
    assert natural[0].class_names[:3] == ("apple", "aquarium fish", "baby")
    report = streams.check_data(s)
    assert not report[0].available and report[0].expected == str(tmp_path / "cifar-100-python")


def test_an_explicit_class_order_is_used_as_given_and_checked(tmp_path):
    order = [3, 1, 4, 0, 9, 2, 6, 5, 8, 7]
    digits = streams.get("split-digits", class_order_seed=order)
    assert digits.metadata["class_order"] == order
    assert [t.class_names for t in digits][:2] == [("3", "1"), ("4", "0")]
    cifar = streams.get("split-cifar100", class_order_seed=list(range(99, -1, -1)),
                        data_root=str(tmp_path))
    assert cifar[0].class_names[0] == "worm"  # CIFAR-100 fine label 99
    with pytest.raises(ValueError, match=r"must list each class id 0..9 exactly once, got \[1, 1"):
        streams.get("split-digits", class_order_seed=[1, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    with pytest.raises(ValueError, match="'run' draws the class order from the run seed"):
        streams.get("split-digits", class_order_seed="run")  # only cl run knows the run seed


def test_split_imagenet_r_reads_its_folder(tmp_path):
    _folder(tmp_path / "imagenet-r", CLASSES, per_class=4)
    s = streams.get("split-imagenet-r", n_tasks=2, class_order_seed=None, data_root=str(tmp_path))
    assert [t.n_classes for t in s] == [3, 3]
    assert len(s[1].load_test()) == 3
    # without the folder: defined (200 placeholder classes, 10 tasks), reported missing, not run
    (tmp_path / "empty").mkdir()
    missing = streams.get("split-imagenet-r", data_root=str(tmp_path / "empty"))
    assert missing.n_classes == 200 and len(missing) == 10
    assert not any(a.available for a in streams.check_data(missing))
    with pytest.raises(FileNotFoundError, match="imagenet-r"):
        streams.require_data(missing)


def test_uneven_and_invalid_task_counts():
    assert task_classes(list(range(7)), 3) == [(0, 1, 2), (3, 4), (5, 6)]
    with pytest.raises(ValueError, match="n_tasks must be between 1 and the number of classes"):
        task_classes(list(range(4)), 5)


def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing-dir"):
        streams.get("split-folder", root=str(tmp_path / "missing-dir"))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir(parents=True)
    (tmp_path / "empty" / "a" / "notes.txt").write_text("not an image")
    s = streams.get("split-folder", root=str(tmp_path / "empty"), n_tasks=1)
    with pytest.raises(ValueError, match="has no images"):
        s[0].load_train()
    _folder(tmp_path / "broken", ["a", "b"], per_class=3)
    (tmp_path / "broken" / "b" / "zz_bad.png").write_bytes(b"not a png")
    s = streams.get("split-folder", root=str(tmp_path / "broken"), n_tasks=1, test_size=0.5)
    data = s[0].load_train() if any(p.name == "zz_bad.png" for p in s[0].load_train().paths) \
        else s[0].load_test()
    with pytest.raises(ValueError, match="zz_bad.png"):
        [data[i] for i in range(len(data))]
    with pytest.raises(TypeError, match="n_tasks"):
        streams.get("split-folder", root=str(tmp_path / "broken"), n_tasks="two")
