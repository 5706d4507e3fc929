"""`cl sweep` and config validation under the research workflow's frictions: relative strategy
files that resume, signals that stop and record the runs, verified run states, grid keys spelled
twice, sweep names that are paths, size limits, dry runs that import no user code, and every
problem of a config reported in one go without torch."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cl.cli import main
from cl.config import limits
from cl.sweep.index import MODIFIED, pid_alive, run_state
from cl.sweep.spec import SweepSpec

ROOT = Path(__file__).resolve().parents[2]

BASE = """
[stream]
name = "split-digits"
n_tasks = 2

[strategy]
name = "nmc"
"""

#: A user strategy (nearest class mean on pixels) that takes SLEEP seconds per task, so a sweep
#: can be stopped while a run is between its first checkpoint and its end.
SLOW_STRATEGY = '''
import time

import torch

from cl.core.strategy import Strategy


class Slow(Strategy):
    inputs = "features"

    def __init__(self, *, sleep: float = 0.0) -> None:
        self.sleep, self.means = sleep, {}

    def train_task(self, data, ctx):
        for c in data.targets.unique().tolist():
            self.means[c] = data.features[data.targets == c].float().mean(0)
        time.sleep(self.sleep)

    def predict(self, inputs, label_space, ctx):
        ids = list(label_space.class_ids)
        means = torch.stack([self.means.get(c, torch.zeros(inputs.shape[1])) for c in ids])
        return -torch.cdist(inputs.float(), means)

    def state_dict(self):
        return {"means": self.means}

    def load_state_dict(self, state):
        self.means = dict(state["means"])
'''


def _config(tmp_path: Path, sweep: str, base: str = BASE, name: str = "exp.toml") -> Path:
    path = tmp_path / name
    path.write_text(base + textwrap.dedent(sweep).replace("OUT", str(tmp_path / "sw")))
    return path


def _cl(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "cl", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.mark.slow
def test_a_relative_strategy_sweep_stopped_by_sigterm_records_its_runs_and_resumes(tmp_path):
    """SIGTERM to `cl sweep` mid-run: no `cl run` left behind, the runs recorded as interrupted;
    the rerun, from the same directory with the same relative spec, completes every run."""
    (tmp_path / "slow_strategy.py").write_text(SLOW_STRATEGY)
    path = _config(tmp_path, """
        [sweep]
        out = "OUT"
        jobs = 2
        seeds = [0, 1]
    """, base='[stream]\nname = "split-digits"\nn_tasks = 2\n[strategy]\n'
              'name = "slow_strategy.py:Slow"\nsleep = 1.5\n')
    sweep = _cl("sweep", str(path), cwd=tmp_path)
    deadline = time.monotonic() + 300
    children: list[int] = []
    while time.monotonic() < deadline and sweep.poll() is None:
        jobs = [json.loads(p.read_text()) for p in (tmp_path / "sw").glob("*/job.json")]
        ckpts = list((tmp_path / "sw").glob("*/checkpoints/task-*.pt"))
        if len(jobs) == 2 and ckpts:  # both running, one past its first task
            children = [j["pid"] for j in jobs]
            break
        time.sleep(0.05)
    assert children, sweep.communicate()[0]
    os.kill(sweep.pid, signal.SIGTERM)
    output = sweep.communicate(timeout=60)[0]
    assert sweep.returncode == 128 + signal.SIGTERM, output
    assert "stopped by SIGTERM" in output
    assert not any(pid_alive(pid) for pid in children)  # no orphaned `cl run`
    run_dirs = sorted(p.parent for p in (tmp_path / "sw").glob("*/job.json"))
    states = [run_state(d) for d in run_dirs]
    assert [s.status for s in states] == ["interrupted", "interrupted"], states
    assert all("received SIGTERM" in (s.error or "") for s in states)
    config = (run_dirs[0] / "config.toml").read_text()
    assert f'"{tmp_path / "slow_strategy.py"}:Slow"' in config  # stored absolute
    rerun = _cl("sweep", str(path), cwd=tmp_path)
    output = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0, output
    assert "resuming after task 1/2" in output
    assert [run_state(d).status for d in run_dirs] == ["completed", "completed"]


@pytest.mark.slow
def test_an_edited_results_json_is_not_completed_and_a_rerun_rewrites_it(tmp_path, capsys):
    path = _config(tmp_path, '[sweep]\nout = "OUT"\n')
    assert main(["sweep", str(path)]) == 0
    (run,) = SweepSpec.from_file(path).expand()
    results = json.loads((run.dir / "results.json").read_text())
    results["metrics"]["average_accuracy"] = 0.99  # a hand edit
    (run.dir / "results.json").write_text(json.dumps(results))
    state = run_state(run.dir)
    assert (state.status, state.error) == ("failed", MODIFIED)
    capsys.readouterr()
    assert main(["sweep", str(path), "--status"]) == 1
    assert "failed" in capsys.readouterr().out
    assert main(["sweep", str(path)]) == 0  # not skipped: resumed from its checkpoints
    assert "(0 completed before; 1 to run" in capsys.readouterr().out
    assert run_state(run.dir).status == "completed"
    assert main(["compare", str(tmp_path / "sw")]) == 0  # verifies again


def test_a_grid_key_spelled_twice_is_refused(tmp_path):
    path = _config(tmp_path, """
        [sweep]
        [sweep.grid]
        "strategy.metric" = ["cosine"]
        strategy.metric = ["euclidean"]
    """)
    with pytest.raises(ValueError, match="sets 'strategy.metric' twice"):
        SweepSpec.from_file(path)


@pytest.mark.parametrize("table, match", [
    ("[sweep]\nruns = [1, 2]\n", r"runs\[0\] is 1; \[\[sweep.runs\]\] entries must be tables"),
    ('[sweep]\nname = "../escape"\n', "name must be a plain name"),
    ('[sweep]\nname = "/tmp/abs"\n', "name must be a plain name"),
    ('[sweep]\nname = ".."\n', "name must be a plain name"),
])
def test_bad_sweep_tables_are_named_not_tracebacks(tmp_path, capsys, table, match):
    path = _config(tmp_path, table)
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(match, err), err


def test_every_problem_of_a_sweep_table_and_its_base_is_reported_at_once(tmp_path, capsys):
    path = _config(tmp_path, '[sweep]\njobs = "two"\nrepeat = 1\nname = "a/b"\n',
                   base='batch_size = "big"\n' + BASE)
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "4 problems in" in err
    for part in ("'jobs' expects an integer", "no key 'repeat'", "plain name",
                 "'batch_size' expects an integer"):
        assert part in err


def test_command_line_refusals_of_cl_sweep(tmp_path, capsys):
    path = _config(tmp_path, '[sweep]\nout = "OUT"\n')
    assert main(["sweep", str(path), "--jobs", "0", "--dry-run"]) == 2  # as a real run refuses
    assert "--jobs must be >= 1, got 0" in capsys.readouterr().err
    taken = tmp_path / "a-file"
    taken.write_text("mine")
    assert main(["sweep", str(path), "--out", str(taken)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert taken.read_text() == "mine"
    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "sweep.json").write_text('{"runs": [1, 2]}')  # the wrong shape
    assert main(["sweep", str(path), "--status"]) == 2
    err = capsys.readouterr().err
    assert "is not a sweep index" in err and "Traceback" not in err
    assert main(["sweep", str(path), "--dry-run"]) == 0  # run states come from run directories


def test_size_limits_refuse_with_the_estimate_and_the_override(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(limits, "MAX_RUNS", 6)  # the check, not the 10,000 runs
    seeds = list(range(limits.MAX_RUNS // 2 + 1))
    path = _config(tmp_path, f'[sweep]\nout = "OUT"\nseeds = {seeds}\n[sweep.grid]\n'
                             '"strategy.metric" = ["cosine", "euclidean"]\n')
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"expands to {2 * len(seeds):,} runs (limit {limits.MAX_RUNS:,}" in err
    assert "--allow-large" in err
    spec = SweepSpec.from_file(path)
    spec.base.allow_large = True
    assert len(spec.expand()) == 2 * len(seeds)  # planned once allowed
    for key, value, what in [("stream.n_train", 1_000_000_000, "images per class"),
                             ("protocol.hp_trials", 1_000_000_000, "more times")]:
        argv = ["run", "--stream", "toy-mtil", "--set", f"{key}={value}", "--dry-run"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{key}={value}" in err and what in err and "--allow-large" in err
    assert main(["run", "--stream", "toy-mtil", "--set", "stream.n_train=1000000000",
                 "--allow-large", "--dry-run"]) == 0  # a dry run builds no images


def test_a_negative_stream_seed_names_the_option(capsys):
    assert main(["run", "--stream", "toy-mtil", "--backbone", "toy-clip", "--set", "stream.seed=-1",
                 "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "stream.seed=-1" in err and "0..4294967295" in err


MARKER_STRATEGY = '''
from pathlib import Path

Path(__file__).with_name("imported.marker").write_text("the strategy file ran")

from cl.core.strategy import Strategy


class Marked(Strategy):
    inputs = "features"

    def __init__(self, *, scale: float = 1.0) -> None:
        self.scale = scale
'''


def test_dry_runs_import_no_user_code(tmp_path, capsys):
    (tmp_path / "marked.py").write_text(MARKER_STRATEGY)
    spec = f"{tmp_path / 'marked.py'}:Marked"
    path = _config(tmp_path, '[sweep]\nout = "OUT"\n[sweep.grid]\n"strategy.scale" = [1.0, 2.0]\n',
                   base=f'[stream]\nname = "split-digits"\n[strategy]\nname = "{spec}"\n')
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert "sweep exp: 2 runs" in capsys.readouterr().out
    assert main(["run", "--strategy", spec, "--set", "strategy.scale=2.0", "--dry-run"]) == 0
    assert not (tmp_path / "imported.marker").exists()
    bad = _config(tmp_path, '[sweep]\nout = "OUT"\n[sweep.grid]\n"strategy.scale" = ["x"]\n',
                  base=f'[stream]\nname = "split-digits"\n[strategy]\nname = "{spec}"\n',
                  name="bad.toml")
    assert main(["sweep", str(bad), "--dry-run"]) == 2  # options checked from source
    assert "option 'scale' expects a number, got 'x'" in capsys.readouterr().err
    assert not (tmp_path / "imported.marker").exists()


THREE_ERRORS = """
batch_size = "large"

[stream]
name = "toy-mtil"
n_train = "many"

[strategy]
name = "gda"
shrinkage = [0.1]
"""


def test_three_type_errors_are_reported_in_one_dry_run_without_torch(tmp_path):
    """All three problems in one message, from a fresh process that never imports torch."""
    config = tmp_path / "three.toml"
    config.write_text(THREE_ERRORS)
    probe = textwrap.dedent(f"""
        import sys
        from cl.cli import main
        code = main(["run", "--config", {str(config)!r}, "--dry-run"])
        print("exit", code, "torch imported:", "torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert "exit 2 torch imported: False" in done.stdout, done.stdout + done.stderr
    err = done.stderr
    assert "3 problems in" in err
    assert "'batch_size' expects an integer, got 'large'" in err
    assert "option 'n_train' expects an integer, got 'many'" in err
    assert "option 'shrinkage' expects" in err


def test_a_sweep_reports_the_problems_of_all_its_runs_at_once(tmp_path, capsys):
    path = _config(tmp_path, """
        [sweep]
        out = "OUT"
        seeds = [0, 1]
        [sweep.grid]
        "strategy.metric" = [1, "cosine"]
        "stream.n_tasks" = ["two", 2]
    """)
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "2 problems in the sweep's runs" in err
    assert "option 'metric'" in err and "(and " in err  # one line, many runs
    assert "option 'n_tasks' expects an integer, got 'two'" in err


def test_a_grid_over_a_key_outside_the_run_identity_is_refused(tmp_path):
    """A grid over `out` (or device, data_root...) would make two runs of one identity, which
    `cl compare` would count as two seeds."""
    path = _config(tmp_path, '[sweep]\n[sweep.grid]\nout = ["a", "b"]\n')
    with pytest.raises(ValueError, match="identical runs .* do not change a run's results"):
        SweepSpec.from_file(path).expand()
