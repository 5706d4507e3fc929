"""Whole runs of the adaptation baselines through ``cl run`` on the fast ``cl-tiny-vit`` path:
SIGKILL mid-run then resume gives the uninterrupted matrix; two gloo processes match one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cl.cli import main

pytestmark = pytest.mark.slow

BASE = ["--stream", "split-digits", "--backbone", "cl-tiny-vit", "--no-progress",
        "--set", "stream.n_tasks=2", "--set", "strategy.iterations=12",
        "--set", "strategy.batch_size=8"]
WARMUP = ["--set", "strategy.warmup=2"]
OPTIONS = {
    "clip-finetune": WARMUP,
    "lwf": WARMUP,
    "wise-ft": [*WARMUP, "--set", "strategy.anchor=zeroshot"],
    "zscl": [*WARMUP, "--set", "strategy.ensemble_every=3", "--set",
             "strategy.reference_batch_size=4"],
    "moe-adapters": [*WARMUP, "--set", "strategy.experts=4", "--set", "strategy.bottleneck=8",
                     "--set", "strategy.ddas_iterations=10", "--set", "strategy.ddas_threshold=1e9"],
    "slca": ["--set", "strategy.ca_samples_per_class=16", "--set", "strategy.head_init=text"],
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[str]:
    """ZSCL's reference set: an image folder and a caption file (absolute paths)."""
    root = tmp_path_factory.mktemp("reference")
    rng = np.random.default_rng(0)
    (root / "images" / "any").mkdir(parents=True)
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(
            root / "images" / "any" / f"{i}.png")
    (root / "captions.txt").write_text("a red square\na blue circle\na photo of a digit\n")
    return ["--set", f"strategy.reference_images={root / 'images'}",
            "--set", f"strategy.reference_texts={root / 'captions.txt'}"]


def _argv(name: str, reference: list[str]) -> list[str]:
    return [*BASE, "--strategy", name, *OPTIONS[name], *(reference if name == "zscl" else [])]


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.parametrize("name", list(OPTIONS))
def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_matrix(name, reference, tmp_path):
    argv = _argv(name, reference)
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cl", "run", "--out", str(killed), *argv]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not ((killed / "checkpoints" / "task-0000.pt").exists()
               and (killed / "results.json").exists()):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "run made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _results(killed)["completed_tasks"] < 2
    resumed = subprocess.run(command, check=False, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    assert resumed.returncode == 0, resumed.stderr.decode()
    fresh = tmp_path / "fresh"
    assert main(["run", "--out", str(fresh), *argv]) == 0
    got, expected = _results(killed), _results(fresh)
    assert got["status"] == "completed"
    assert got["accuracy_matrix"] == expected["accuracy_matrix"]
    assert got["records"] == expected["records"]
    for a, b in zip(got["compute"], expected["compute"], strict=True):
        assert a["trainable_parameters"] == b["trainable_parameters"] > 0
        assert a["peak_memory_bytes"] > 0


def test_two_gloo_processes_train_zscl_and_moe_adapters_as_one(reference, tmp_path,
                                                              cli_on_two_ranks):
    """ZSCL (per-example terms only) gives the 1-process matrix; MoE-Adapters, whose ranks leave
    different experts unused and draw their own routing noise, trains and freezes alike."""
    for name, extra in (("zscl", ["--set", "strategy.text_loss=false"]), ("moe-adapters", [])):
        argv = [*_argv(name, reference), *extra]
        assert main(["run", "--out", str(tmp_path / name / "one"), *argv]) == 0
        cli_on_two_ranks(["run", "--out", str(tmp_path / name / "two"), *argv])
        one, two_ = _results(tmp_path / name / "one"), _results(tmp_path / name / "two")
        assert two_["status"] == "completed"
        for a, b in zip(one["compute"], two_["compute"], strict=True):
            assert a["examples_seen"] == b["examples_seen"] == 12 * 8
        if name == "zscl":
            assert two_["accuracy_matrix"] == one["accuracy_matrix"]
            assert two_["records"] == one["records"]
        else:
            assert one["compute"][0]["trainable_parameters"] == \
                two_["compute"][0]["trainable_parameters"]
            assert two_["records"][0]["frozen_experts"] == one["records"][0]["frozen_experts"]
