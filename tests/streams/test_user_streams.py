"""User streams: Stream.from_folders and Stream.from_datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import Dataset

from streams import from_datasets, from_folders
from streams.arrays import ArrayImageDataset


def _task_folder(root: Path, classes: list[str], split: bool) -> None:
    rng = np.random.default_rng(0)
    for part in (("train", "test") if split else ("",)):
        for c in classes:
            d = root / part / c
            d.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (6, 6), dtype=np.uint8)).save(d / f"{i}.png")


class NoTargets(Dataset):
    """A dataset that does not expose its labels."""

    def __init__(self, labels: list[int]) -> None:
        self.labels_ = labels

    def __len__(self) -> int:
        return len(self.labels_)

    def __getitem__(self, i: int):
        return Image.new("L", (4, 4)), self.labels_[i]


def test_from_folders_makes_one_task_per_folder_in_year_order(tmp_path):
    _task_folder(tmp_path / "birds", ["crow", "owl"], split=True)
    _task_folder(tmp_path / "cars", ["suv", "van", "bus"], split=False)
    s = from_folders([tmp_path / "birds", tmp_path / "cars"], name="mine",
                            years=[2015, 2001], templates=("a photo of a {}.", "a {}."))
    assert s.task_names == ("cars", "birds") and [t.year for t in s] == [2001, 2015]
    assert s.scenario == "task-incremental"
    assert s[1].class_names == ("crow", "owl") and s[0].class_names == ("bus", "suv", "van")
    assert len(s[1].load_train()) == 8 and len(s[1].load_test()) == 8
    train, test = s[0].load_train(), s[0].load_test()
    assert len(train) + len(test) == 12 and sorted(set(test.targets)) == [0, 1, 2]


def test_from_datasets_with_pairs_and_single_datasets():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (20, 8, 8), dtype=np.uint8)
    labels = np.repeat(np.arange(4), 5)
    pair = (ArrayImageDataset(imgs[:10], labels[:10] % 2), ArrayImageDataset(imgs[10:], labels[10:] % 2))
    single = ArrayImageDataset(imgs, labels)
    s = from_datasets([pair, single], class_names=[["even", "odd"], ["a", "b", "c", "d"]],
                             scenario="class-incremental", name="user")
    assert s.task_names == ("user-0", "user-1") and s.n_classes == 6
    train, test = s[1].load_train(), s[1].load_test()
    assert len(train) == 16 and len(test) == 4 and sorted(test.targets) == [0, 1, 2, 3]
    assert s[0].load_test() is pair[1]


def test_class_names_that_do_not_match_the_labels_are_rejected():
    ds = ArrayImageDataset(np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 2, 2]))
    with pytest.raises(ValueError, match=r"labels \[2\] do not match the 2 class names"):
        from_datasets([(ds, ds)], class_names=[["x", "y"]])
    lazy = from_datasets([(NoTargets([0, 3]), NoTargets([0]))], class_names=[["x", "y"]])
    train = lazy[0].load_train()
    assert train[0][1] == 0
    with pytest.raises(ValueError, match="item 1 has label 3, but only 2 class names"):
        train[1]
    with pytest.raises(ValueError, match="1 datasets but 2 class-name lists"):
        from_datasets([(ds, ds)], class_names=[["x", "y", "z"], ["w"]])
    with pytest.raises(TypeError, match="list of lists"):
        from_datasets([(ds, ds)], class_names=["x", "y", "z"])


def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        from_folders([tmp_path / "nowhere"])
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "img.png").write_bytes(b"")
    with pytest.raises(ValueError, match="no class sub-folders"):
        from_folders([tmp_path / "flat"])
    with pytest.raises(TypeError, match="list of task folders"):
        from_folders(str(tmp_path / "flat"))
