"""Resume safety: numpy states, user code resumed from elsewhere, states of another strategy,
finished runs, leftovers of killed writers, and failure records that never fail."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

import streams
from cl.cli import main
from cl.config.code import sha256_file
from cl.core.checkpoint import CheckpointStore
from cl.core.runner import Runner
from cl.models.backbones import create_backbone
from strategies.finetune import Finetune
from strategies.heads.nmc import NMCStrategy
from strategies.plugins.replay import ReplayPlugin

FAST = ["--set", "stream.n_tasks=2", "--no-progress"]

USER_CODE = '''
import json

import numpy as np
import torch
from cl import Plugin, Strategy


class NumpyMeans(Strategy):
    """Class means kept as float64 numpy arrays, and a numpy counter, in its state."""

    def __init__(self, *, shrink: float = 0.0):
        self.shrink, self.means, self.count = shrink, {}, np.int64(0)

    def train_task(self, data, ctx):
        X, y = data.features.numpy().astype(np.float64), data.targets.numpy()
        for c in np.unique(y):
            self.means[int(c)] = (1 - self.shrink) * X[y == c].mean(0)
        self.count += len(y)

    def predict(self, inputs, label_space, ctx):
        X = inputs.numpy().astype(np.float64)
        out = np.full((len(X), len(label_space)), -1e9)
        for i, c in enumerate(label_space.class_ids):
            if c in self.means:
                out[:, i] = -np.linalg.norm(X - self.means[c], axis=1)
        return torch.from_numpy(out)

    def state_dict(self):
        return {"means": {str(c): m for c, m in self.means.items()}, "count": self.count}

    def load_state_dict(self, state):
        assert all(isinstance(m, np.ndarray) for m in state["means"].values())
        self.means = {int(c): m for c, m in state["means"].items()}
        self.count = state["count"]


class Failing(NumpyMeans):
    def train_task(self, data, ctx):
        raise ValueError("boom in train_task")


class Journal(Plugin):
    """Writes one line per task into the run directory."""

    def __init__(self, *, every: int = 1):
        self.every = every

    def after_task(self, ctx):
        with open(ctx.run_dir / "journal.jsonl", "a") as fh:
            fh.write(json.dumps({"task": ctx.task_index, "every": self.every}) + "\\n")
'''


@pytest.fixture
def code_dir(tmp_path) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "user_code.py").write_text(USER_CODE)
    return folder


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_numpy_state_user_code_resumes_from_another_directory(tmp_path, code_dir, monkeypatch,
                                                              capsys):
    """Issue cases: a numpy state was reported unreadable on resume and every task rerun; a
    relative file path broke resuming from another working directory."""
    out = tmp_path / "run"
    monkeypatch.chdir(code_dir)
    assert main(["run", "--strategy", "user_code.py:NumpyMeans", "--out", str(out), *FAST]) == 0
    full = results(out)
    file = code_dir / "user_code.py"
    assert full["config"]["strategy"]["name"] == f"{file}:NumpyMeans"
    assert full["code"]["strategy"] == {"spec": f"{file}:NumpyMeans", "path": str(file),
                                        "sha256": sha256_file(file)}
    state = CheckpointStore(out).load_latest(quarantine=False)
    assert state["strategy"]["count"].dtype.name == "int64"

    CheckpointStore(out).checkpoints()[0].unlink()  # killed during the last task
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"strategy '{file}:NumpyMeans' imports {file}" in err and "OUTSIDE the run" in err
    assert results(out)["accuracy_matrix"] == full["accuracy_matrix"]
    assert not list(out.rglob("*.corrupt"))

    CheckpointStore(out).checkpoints()[0].unlink()
    file.write_text(USER_CODE.replace("(1 - self.shrink)", "(1.0 - self.shrink)"))
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "different run setup" in err and "code.strategy.sha256" in err


def test_a_state_of_another_strategy_or_plugin_set_is_refused(tmp_path):
    """Issue case: NMC's load_state_dict quietly reset when given finetune's state."""
    out = tmp_path / "run"
    stream, pixels = streams.get("split-digits", n_tasks=2), create_backbone("pixels")
    Runner(stream, Finetune(epochs=1), pixels, out_dir=out, progress=False).run()
    CheckpointStore(out).checkpoints()[0].unlink()
    with pytest.raises(ValueError, match=r"holds the state of strategy strategies.finetune:Finetune"
                                         r".*this run's strategy is strategies.heads.nmc:NMCStrategy"):
        Runner(stream, NMCStrategy(), pixels, out_dir=out, progress=False).run()
    with pytest.raises(ValueError, match=r"holds the states of 0 plugins \(none\), this run has 1 "
                                         r"\(strategies.plugins.replay:ReplayPlugin\)"):
        Runner(stream, Finetune(epochs=1), pixels, out_dir=out, progress=False,
               plugins=[ReplayPlugin()]).run()


def test_a_finished_run_is_left_alone_and_leftovers_are_cleaned(tmp_path, caplog):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *FAST]) == 0
    outputs = ["results.json", "report.md", "accuracy_matrix.png", "config.toml"]
    before = {name: (out / name).stat().st_mtime_ns for name in outputs}
    with caplog.at_level(logging.WARNING, logger="cl"):
        assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert "is already complete (2 of 2 tasks); its outputs are left as they are" in caplog.text
    assert {name: (out / name).stat().st_mtime_ns for name in outputs if name != "config.toml"} \
        == {k: v for k, v in before.items() if k != "config.toml"}

    full = results(out)["accuracy_matrix"]
    (out / ".results.json.0123abcd.tmp").write_text("{half")  # killed mid-write
    (out / "checkpoints" / ".task-0001.pt.4567.tmp").write_bytes(b"PK")
    newest = CheckpointStore(out).checkpoints()[0]
    newest.write_bytes(newest.read_bytes()[:200])
    with pytest.warns(RuntimeWarning, match="task-0001.pt .*unreadable"):
        assert main(["run", "--out", str(out), *FAST]) == 0
    assert results(out)["accuracy_matrix"] == full
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.corrupt"))


def test_an_old_checkpoint_without_checksum_still_resumes(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *FAST]) == 0
    full = results(out)["accuracy_matrix"]
    store = CheckpointStore(out)
    newest = store.checkpoints()[0]
    state = torch.load(newest, weights_only=True)
    old = {"format": 1, "task": state["task"], "tracker": state["tracker"],
           "strategy": state["strategy"], "plugins": state["plugins"]}
    torch.save(old, newest)
    store.checkpoints()[0].with_name("task-0000.pt").unlink()
    with pytest.warns(RuntimeWarning, match="written before checkpoints had checksums"):
        assert store.load_latest(quarantine=False)["task"] == 1
    (out / "results.json").unlink()
    with pytest.warns(RuntimeWarning, match="before checkpoints had checksums"):
        assert main(["run", "--out", str(out), *FAST]) == 0
    assert results(out)["accuracy_matrix"] == full


def test_the_failure_record_never_hides_the_error(tmp_path, code_dir, capsys):
    """Issue case: `--set strategy.lr=nan` printed a JSON error because writing the failure
    record failed. Even when results.json cannot be written at all, the run's own error shows."""
    out = tmp_path / "run"
    (out / "results.json").mkdir(parents=True)
    code = main(["run", "--strategy", f"{code_dir}/user_code.py:Failing", "--out", str(out), *FAST])
    assert code == 2
    err = capsys.readouterr().err
    assert "cl run: error: boom in train_task" in err


def test_a_file_plugin_takes_set_options_and_sees_the_run_directory(tmp_path, code_dir):
    out = tmp_path / "run"
    spec = f"{code_dir}/user_code.py:Journal"
    assert main(["run", "--plugin", spec, "--set", f"plugins.{spec}.every=3", "--out", str(out),
                 *FAST]) == 0
    lines = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    assert lines == [{"task": 0, "every": 3}, {"task": 1, "every": 3}]
    assert results(out)["config"]["plugins"] == {spec: {"every": 3}}


def test_a_relative_file_plugin_is_one_plugin_however_it_is_written(tmp_path, code_dir,
                                                                    monkeypatch, capsys):
    monkeypatch.chdir(code_dir.parent)
    dry = ["--out", str(tmp_path / "run"), "--dry-run", "--no-progress"]
    assert main(["run", "--plugin", "code/user_code.py:Journal",
                 "--set", "plugins../code/user_code.py:Journal.every=2", *dry]) == 0
    out = capsys.readouterr().out
    assert f"plugins   {code_dir}/user_code.py:Journal\n" in out
    assert out.count("checked   plugin") == 1
    assert main(["run", "--plugin", "code/user_code.py:Journal",
                 "--set", "plugins.code/user_code.py:Journal.every=abc", *dry]) == 2
    assert "option 'every' expects an integer, got 'abc'" in capsys.readouterr().err
