"""`cl streams show|check` and end-to-end runs of the new streams through `cl run`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cl.cli import main


def _prepare(root: Path, key: str, classes: list[str]) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for k, c in enumerate(classes):
            d = root / "nevis" / key / split / c
            d.mkdir(parents=True)
            for i in range(n):
                arr = np.full((8, 8), 60 * k, np.uint8) + rng.integers(0, 9, (8, 8), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")


def test_show_prints_the_ordered_tasks_with_years(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["streams", "show", "nevis", "--data-root", str(tmp_path),
                 "--set", "stream.stop_year=none"]) == 0
    out = capsys.readouterr().out
    assert "nevis (106 tasks, task-incremental" in out
    assert out.index("Magellan Venus Volcanoes (1992)") < out.index("MNIST (2004)") < \
        out.index("Synthetic COVID-19 Chest X-ray Dataset (2021)")


def test_check_lists_available_and_missing_tasks(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    _prepare(tmp_path, "magellan_venus_volcanoes", ["no", "yes"])
    _prepare(tmp_path, "coil20", ["o1", "o2", "o3"])
    code = main(["streams", "check", "nevis", "--data-root", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "3 of 92 tasks available; 89 missing." in out  # COIL 20 appears in 2000 and 2019
    assert str(tmp_path / "nevis" / "aberdeen") in out


def test_check_rejects_a_missing_data_root_and_unknown_options(tmp_path, capsys):
    assert main(["streams", "check", "nevis", "--data-root", str(tmp_path / "nope")]) != 0
    assert "does not exist" in capsys.readouterr().err
    assert main(["streams", "show", "split-digits", "--set", "n_task=3"]) != 0
    assert "has no option 'n_task'" in capsys.readouterr().err


def test_synthetic_nevis_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--stream", "synthetic-nevis", "--set", "stream.n_tasks=5",
                 "--set", "stream.max_classes=20", "--backbone", "pixels", "--strategy", "nmc",
                 "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["tasks"]) == 5


def test_split_folder_runs_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(4):
        d = tmp_path / "imgs" / f"class{k}"
        d.mkdir(parents=True)
        for i in range(6):
            arr = np.full((8, 8), 60 * k, np.uint8) + rng.integers(0, 9, (8, 8), dtype=np.uint8)
            Image.fromarray(arr).save(d / f"{i}.png")
    out = tmp_path / "run"
    assert main(["run", "--stream", "split-folder", "--set", f"stream.root={tmp_path / 'imgs'}",
                 "--set", "stream.n_tasks=2", "--backbone", "pixels", "--strategy", "nmc",
                 "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"] == ["split-folder-00", "split-folder-01"]


@pytest.mark.slow
def test_hundred_task_synthetic_nevis_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--stream", "synthetic-nevis", "--set", "stream.n_tasks=100",
                 "--backbone", "pixels", "--strategy", "nmc", "--out", str(out),
                 "--no-progress"]) == 0
    assert len(json.loads((out / "results.json").read_text())["tasks"]) == 100


def test_list_streams_shows_the_domain_incremental_streams(capsys):
    assert main(["list", "streams", "--format", "json"]) == 0
    rows = {e["name"]: e["description"] for e in json.loads(capsys.readouterr().out)}
    for name in ("core50", "domain-digits"):
        assert "domain-incremental" in rows[name]


def test_class_counts_known_only_from_data_read_from_data(tmp_path, capsys):
    assert main(["streams", "show", "nevis-short", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    (row,) = [ln for ln in out.splitlines() if "Pascal 2006 (2009)" in ln]
    assert "from data" in row and " 1 " not in row
    assert main(["run", "--stream", "nevis-short", "--dry-run", "--data-root", str(tmp_path)]) == 0
    plan = capsys.readouterr().out
    assert "  0  COIL 100 (2004)  (100 classes)" in plan  # the year once, as in `streams show`
    assert "Pascal 2006 (2009)  (classes from data)" in plan and "2004 COIL" not in plan
