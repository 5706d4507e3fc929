"""CORe50 NI on a real (tiny) CORe50 folder tree: sessions as domain-incremental tasks, the held-out
sessions as every task's test split, expected paths checked by `cl streams check`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import streams
from cl.cli import main


def make_core50(root: Path, sessions=range(1, 12), per_object: int = 1) -> Path:
    """``root/core50/core50_128x128/s<k>/o<i>/C_<k>_<i>_<n>.png``: one tiny PNG per object."""
    base = root / "core50" / "core50_128x128"
    for s in sessions:
        for o in range(1, 51):
            d = base / f"s{s}" / f"o{o}"
            d.mkdir(parents=True)
            for n in range(per_object):
                Image.fromarray(np.full((4, 4, 3), (5 * o + s + n) % 256, np.uint8)).save(
                    d / f"C_{s:02d}_{o:02d}_{n:03d}.png")
    return base


def test_ni_sessions_are_domain_incremental_tasks_over_50_objects(tmp_path):
    base = make_core50(tmp_path)
    s = streams.get("core50", data_root=str(tmp_path))
    assert s.scenario == "domain-incremental" and len(s) == 8 and s.n_classes == 50
    assert s.task_names == tuple(f"session {k}" for k in (1, 2, 4, 5, 6, 8, 9, 11))
    assert s[0].class_names[:6] == ("plug adapter 1", "plug adapter 2", "plug adapter 3",
                                    "plug adapter 4", "plug adapter 5", "mobile phone 1")
    train = s[1].load_train()
    assert [p.parent.parent.name for p in train.paths] == ["s2"] * 50
    assert train.targets == list(range(50))  # o<i> is object i-1
    test = s[0].load_test()
    assert len(test) == 150 and s[5].metadata["test_key"] == s[0].metadata["test_key"]
    assert sorted({p.parent.parent.name for p in test.paths}) == ["s10", "s3", "s7"]
    assert test.targets == list(range(50)) * 3  # labels known without opening an image
    cats = streams.get("core50", labels="categories", data_root=str(tmp_path))
    assert cats.n_classes == 10 and cats[0].load_train().targets[:10] == [0] * 5 + [1] * 5
    assert str(base / "s1") == s[0].metadata["expected_path"]


def test_check_names_each_missing_session_folder(tmp_path, capsys):
    make_core50(tmp_path, sessions=(1, 2, 3, 7, 10))
    code = main(["streams", "check", "core50", "--data-root", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "2 of 8 tasks available; 6 missing." in out
    expected = tmp_path / "core50" / "core50_128x128" / "s11"
    assert f"missing {expected}" in out  # the full path, not cut at 80 columns
    assert max(len(line) for line in out.splitlines()) > 80


def test_bad_sessions_are_errors(tmp_path):
    with pytest.raises(ValueError, match="distinct CORe50 sessions 1..11"):
        streams.get("core50", sessions=[1, 3], data_root=str(tmp_path))


def test_a_run_encodes_the_shared_test_sessions_once(tmp_path):
    make_core50(tmp_path)
    out = tmp_path / "run"
    assert main(["run", "--stream", "core50", "--data-root", str(tmp_path), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["scenario"] == "domain-incremental" and len(res["tasks"]) == 8
    forwards = [c["backbone_forwards"] for c in res["compute"]]
    assert forwards == [50 + 150] + [50] * 7  # each session's 50 images; the 150 test images once
    A = res["accuracy_matrix"]
    assert all(row[j] == row[0] for row in A for j in range(8))  # one test set for every task
