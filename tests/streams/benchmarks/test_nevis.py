"""NEVIS'22 stream definitions: order, years, variants, stop_year, missing-data report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import streams
from streams import check_data, drop_missing, require_data
from streams.benchmarks.nevis import nevis, nevis_entries


def _write_images(folder: Path, classes: list[str], per_class: int = 3, size: int = 8) -> None:
    rng = np.random.default_rng(0)
    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 255, (size, size), dtype=np.uint8)
            Image.fromarray(arr).save(folder / c / f"{i}.png")


def _prepare(root: Path, key: str, classes: list[str]) -> None:
    _write_images(root / "nevis" / key / "train", classes, 3)
    _write_images(root / "nevis" / key / "test", classes, 2)


def test_full_stream_has_106_tasks_in_reference_order(tmp_path):
    s = nevis(stop_year=None, data_root=str(tmp_path))
    assert len(s) == 106 and s.scenario == "task-incremental"
    years = [t.year for t in s]
    assert years == sorted(years) and years[0] == 1992 and years[-1] == 2021
    # spot checks against the reference table (dm_nevis nevis_stream.py)
    assert s[0].name == "Magellan Venus Volcanoes (1992)"
    assert s[9].name == "MNIST (2004)" and s[46].name == "MNIST (2015)"
    assert s[26].name == "ImageNet (2011)" and s[95].name == "ImageNet (2021)"
    assert s[105].name == "Synthetic COVID-19 Chest X-ray Dataset (2021)"
    assert [t.metadata["position"] for t in s] == list(range(1, 107))
    assert s[16].n_classes == 1000  # ALOI, class count from the reference


def test_short_and_tiny_variants(tmp_path):
    short = nevis(variant="short", stop_year=None, data_root=str(tmp_path))
    tiny = streams.get("nevis-tiny", stop_year=None, data_root=str(tmp_path))
    assert len(short) == 29 and len(tiny) == 7
    assert short[0].name == "COIL 100 (2004)" and short[-1].name == "FGVC Aircraft (2020)"
    assert [t.name for t in tiny] == [
        "MNIST (2004)", "Caltech 101 (2010)", "Pascal 2012 (2014)", "CIFAR 100 (2018)",
        "MNIST (2018)", "ISBI-ISIC 2017 melanoma classification challenge (2018)", "CUB 200 (2020)"]
    # SHORT/TINY years are their own, not FULL's (MNIST is 2004 and 2015 in FULL)
    assert tiny[4].year == 2018


def test_stop_year_cuts_at_the_development_stream(tmp_path):
    dev = nevis(data_root=str(tmp_path))
    assert len(dev) == 92 and max(t.year for t in dev) == 2019
    assert len(nevis(stop_year=2010, data_root=str(tmp_path))) == 21
    assert len(nevis(variant="tiny", data_root=str(tmp_path))) == 6


def test_single_label_only_drops_and_reports_multi_label_tasks(tmp_path):
    s = nevis(stop_year=None, single_label_only=True, data_root=str(tmp_path))
    dropped = s.metadata["dropped_multi_label"]
    assert len(s) == 97 and len(dropped) == 9
    assert "Pascal 2007 (2010)" in dropped and "CelebA (2017)" in dropped
    assert all(t.metadata["task_kind"] == "CLASSIFICATION" for t in s)
    kinds = {e.task_kind for e in nevis_entries("full")}
    assert kinds == {"CLASSIFICATION", "MULTI_LABEL_CLASSIFICATION"}


def test_missing_data_report_is_exact_with_two_prepared_tasks(tmp_path):
    _prepare(tmp_path, "magellan_venus_volcanoes", ["no volcano", "volcano"])
    _prepare(tmp_path, "aloi", ["obj1", "obj2", "obj3"])
    s = nevis(stop_year=None, data_root=str(tmp_path))
    report = check_data(s)
    available = [a.task for a in report if a.available]
    assert available == ["Magellan Venus Volcanoes (1992)", "ALOI (2006)"]
    missing = {a.task: a for a in report if not a.available}
    assert len(missing) == 104
    assert missing["Aberdeen face database. (1992)"].expected == str(tmp_path / "nevis" / "aberdeen")
    assert missing["MNIST (2004)"].expected == (
        f"{tmp_path / 'nevis' / 'mnist'} or {tmp_path / 'MNIST' / 'raw'}")
    with pytest.raises(FileNotFoundError, match="104 of 106 tasks") as err:
        require_data(s)
    assert "Aberdeen face database. (1992)" in str(err.value)
    kept, skipped = drop_missing(s)
    assert kept.task_names == ("Magellan Venus Volcanoes (1992)", "ALOI (2006)")
    assert len(skipped) == 104 and kept.metadata["skipped_tasks"] == skipped


def test_prepared_folder_task_loads_with_folder_class_names(tmp_path):
    _prepare(tmp_path, "magellan_venus_volcanoes", ["no volcano", "volcano"])
    task = nevis(stop_year=None, data_root=str(tmp_path))[0]
    assert task.class_names == ("no volcano", "volcano")
    assert task.metadata["resolution"] == "image-folder"
    train, test = task.load_train(), task.load_test()
    assert len(train) == 6 and len(test) == 4
    image, label = train[5]
    assert isinstance(image, Image.Image) and label == 1
    missing = nevis(stop_year=None, data_root=str(tmp_path))[1]
    with pytest.raises(FileNotFoundError, match="aberdeen"):
        missing.load_train()


def test_defining_the_stream_opens_no_image(tmp_path, monkeypatch):
    _prepare(tmp_path, "aloi", ["a", "b"])

    def fail(*args, **kwargs):
        raise AssertionError("an image was opened while defining the stream")

    monkeypatch.setattr(Image, "open", fail)
    s = nevis(stop_year=None, data_root=str(tmp_path))
    assert check_data(s)[16].available


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        nevis(data_root=str(tmp_path / "does-not-exist"))
    with pytest.raises(ValueError, match="has no option 'stopyear'"):
        streams.get("nevis", stopyear=2010, data_root=str(tmp_path))
    with pytest.raises(TypeError, match="variant"):
        streams.get("nevis", variant="huge", data_root=str(tmp_path))
