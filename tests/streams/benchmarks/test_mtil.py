"""MTIL (ZSCL) and X-TAIL (RAIL) stream definitions, and torchvision loading offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import streams
from streams import check_data
from streams.benchmarks.mtil import MTIL_ORDER_I, MTIL_ORDER_II, class_names, templates
from streams.benchmarks.xtail import few_shot

EUROSAT_FOLDERS = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
                   "Pasture", "PermanentCrop", "Residential", "River", "SeaLake"]


def _eurosat(root: Path, folders: list[str], per_class: int = 5) -> None:
    rng = np.random.default_rng(0)
    for c in folders:
        d = root / "eurosat" / "2750" / c
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(d / f"{c}_{i}.jpg")


def test_mtil_orders_and_class_counts(tmp_path):
    one = streams.get("mtil", data_root=str(tmp_path))
    two = streams.get("mtil", order="II", data_root=str(tmp_path))
    assert one.task_names == ("Aircraft", "Caltech101", "CIFAR100", "DTD", "EuroSAT", "Flowers",
                              "Food", "MNIST", "OxfordPet", "StanfordCars", "SUN397")
    assert two.task_names == ("StanfordCars", "Food", "MNIST", "OxfordPet", "Flowers", "SUN397",
                              "Aircraft", "Caltech101", "DTD", "EuroSAT", "CIFAR100")
    assert sorted(MTIL_ORDER_I) == sorted(MTIL_ORDER_II)
    counts = {t.name: t.n_classes for t in one}
    assert counts == {"Aircraft": 100, "Caltech101": 101, "CIFAR100": 100, "DTD": 47, "EuroSAT": 10,
                      "Flowers": 102, "Food": 101, "MNIST": 10, "OxfordPet": 37,
                      "StanfordCars": 196, "SUN397": 397}
    assert one.scenario == "task-incremental"
    assert len(one.eval_label_space(3, 10)) == 47  # DTD scored on its own classes only


def test_mtil_templates_are_format_strings_that_render():
    assert templates("MNIST") == ('a photo of the number: "{}".',)
    assert class_names("MNIST")[3] == "3 - three"
    assert templates("Aircraft")[0].format(class_names("Aircraft")[0]) == \
        "a photo of a 707-320, a type of aircraft."
    assert class_names("EuroSAT")[0] == "annual crop land"
    assert class_names("SUN397")[1] == "airplane cabin"  # underscores become spaces, as ZSCL does
    assert len(templates("CIFAR100")) == 18 and len(templates("Caltech101")) == 34
    for d in MTIL_ORDER_I:
        for t in templates(d):
            assert t.count("{}") == 1
            assert "{}" not in t.format("x")


def test_xtail_is_task_agnostic_over_ten_domains(tmp_path):
    s = streams.get("x-tail", data_root=str(tmp_path))
    assert s.task_names == ("Aircraft", "Caltech101", "DTD", "EuroSAT", "Flowers", "Food", "MNIST",
                            "OxfordPet", "StanfordCars", "SUN397")
    assert s.scenario == "task-agnostic"
    assert len(s.eval_label_space(0, None)) == s.n_classes == 1101  # sum of the ten class counts
    assert s[6].prompts("0 - zero") == ["a photo of a 0 - zero."]


def test_eurosat_loads_through_torchvision_with_the_reference_80_20_split(tmp_path):
    _eurosat(tmp_path, EUROSAT_FOLDERS, per_class=5)
    s = streams.get("mtil", data_root=str(tmp_path))
    eurosat = s[4]
    report = {a.task: a for a in check_data(s)}
    assert report["EuroSAT"].available and not report["MNIST"].available
    assert report["MNIST"].expected == str(tmp_path / "MNIST" / "raw")
    train, test = eurosat.load_train(), eurosat.load_test()
    assert len(train) == 40 and len(test) == 10
    # torch.utils.data.random_split with a generator seeded 42 (ZSCL split_dataset)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(42)).tolist()
    assert list(train.indices) == perm[:40] and list(test.indices) == perm[40:]
    image, label = test[0]
    assert isinstance(image, Image.Image) and 0 <= label < 10
    shots = few_shot(train, 2, seed=0)
    counts = np.bincount(np.asarray(shots.targets), minlength=10)
    assert counts.max() <= 2 and counts.sum() == sum(min(2, c) for c in
                                                     np.bincount(np.asarray(train.dataset.targets)
                                                                 [train.indices], minlength=10))


def test_missing_torchvision_data_fails_with_the_expected_path(tmp_path):
    s = streams.get("mtil", data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="MNIST") as err:
        s[7].load_train()
    assert "stream.download=true" in str(err.value)


def test_dataset_with_other_classes_than_the_names_is_rejected(tmp_path):
    _eurosat(tmp_path, EUROSAT_FOLDERS[:9], per_class=2)
    task = streams.get("mtil", data_root=str(tmp_path))[4]
    with pytest.raises(ValueError, match="has 9 classes, expected 10"):
        task.load_train()


def test_bad_options(tmp_path):
    with pytest.raises(TypeError, match="order"):
        streams.get("mtil", order="III", data_root=str(tmp_path))
    with pytest.raises(ValueError, match="n_shots"):
        streams.get("x-tail", n_shots=0, data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="data root"):
        streams.get("x-tail", data_root=str(tmp_path / "nope"))
