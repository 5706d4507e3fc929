"""Crash-safe, repeatable runs: SIGKILL + resume, corrupt checkpoints, config mismatch, seeds."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import streams
from cl.cli import main
from cl.core.checkpoint import CheckpointStore
from cl.core.runner import Runner
from cl.models.backbones import create_backbone
from strategies.finetune import Finetune

FINETUNE = ["--strategy", "finetune", "--set", "strategy.epochs=25", "--no-progress"]


def matrix(run_dir: Path) -> list:
    return json.loads((run_dir / "results.json").read_text())["accuracy_matrix"]


def cl_process(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "cl", "run", "--out", str(out), *FINETUNE, *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_mid_task_then_resume_gives_the_uninterrupted_matrix(tmp_path):
    killed = tmp_path / "killed"
    proc = cl_process(killed)
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "task-0001.pt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "run made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = json.loads((killed / "results.json").read_text())
    assert partial["status"] == "running" and partial["completed_tasks"] < 5
    # re-running the same command into the same --out continues after the last finished task
    assert cl_process(killed).wait() == 0
    resumed = json.loads((killed / "results.json").read_text())
    assert resumed["status"] == "completed"
    fresh = tmp_path / "fresh"  # uninterrupted, in this process
    assert main(["run", "--out", str(fresh), *FINETUNE]) == 0
    assert resumed["accuracy_matrix"] == matrix(fresh)
    assert resumed["zero_shot"] == json.loads((fresh / "results.json").read_text())["zero_shot"]


def test_same_seed_gives_bit_identical_matrices_and_other_seed_differs(tmp_path):
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert main(["run", "--out", str(tmp_path / name), "--seed", seed, *FINETUNE[:2],
                     "--set", "strategy.epochs=3", "--no-progress"]) == 0
    assert matrix(tmp_path / "a") == matrix(tmp_path / "b")
    assert matrix(tmp_path / "a") != matrix(tmp_path / "c")


def _runner(out: Path, **kw) -> Runner:
    return Runner(streams.get("split-digits"), Finetune(epochs=2), create_backbone("pixels"),
                  out_dir=out, progress=False, **kw)


def test_corrupt_newest_checkpoint_falls_back_to_previous_with_a_warning(tmp_path):
    out = tmp_path / "run"
    full = _runner(out).run().tracker.matrix.copy()
    store = CheckpointStore(out)
    newest, previous = store.checkpoints()[:2]
    assert newest.name == "task-0004.pt" and previous.name == "task-0003.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated file
    with pytest.warns(RuntimeWarning, match="task-0004.pt.*unreadable.*previous"):
        state = store.load_latest()
    assert state["task"] == 3
    newest.with_suffix(".corrupt").rename(newest)
    newest.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning):
        resumed = _runner(out).run()
    np.testing.assert_array_equal(resumed.tracker.matrix, full)


def test_resume_refuses_a_directory_of_another_config(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["run", "--out", str(out), "--no-progress", "--strategy", "finetune"]
    assert main([*base, "--set", "strategy.epochs=1"]) == 0
    assert main([*base, "--set", "strategy.epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "strategy.epochs: 1 -> 2" in err
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0  # same config: fine


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    runner = _runner(out)
    calls = {"n": 0}
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # the checkpoint after task 2: disk full
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        runner.run()
    monkeypatch.setattr(torch, "save", real_save)
    names = [p.name for p in CheckpointStore(out).checkpoints()]
    assert names == ["task-0001.pt", "task-0000.pt"]  # no half-written task-0002.pt
    assert not list((out / "checkpoints").glob("*.tmp"))
    assert CheckpointStore(out).load_latest()["task"] == 1
    assert json.loads((out / "results.json").read_text())["status"] == "failed"
