"""`cl sweep`: [sweep] grids and lists expanded into deterministic runs, the index and the state of
each run, local processes (--jobs), resume after a killed run, and the Slurm path through submitit's
local executor."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cl.cli import main
from cl.runtime.integrity import seal
from cl.sweep import local
from cl.sweep.index import read_index, run_state, write_job
from cl.sweep.progress import Progress
from cl.sweep.spec import SweepSpec

ROOT = Path(__file__).resolve().parents[2]

BASE = """
batch_size = 128

[stream]
name = "split-digits"
n_tasks = 2

[strategy]
name = "gda"
shrinkage = 0.3
"""


def write_config(tmp_path: Path, sweep: str, base: str = BASE) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(base + textwrap.dedent(sweep).replace("OUT", str(tmp_path / "sw")))
    return path


def test_grids_and_lists_expand_to_deterministic_runs(tmp_path):
    path = write_config(tmp_path, """
        [sweep]
        out = "OUT"
        seeds = [0, 1]

        [sweep.grid]
        stream.n_tasks = [2, 5]

        [[sweep.runs]]
        strategy.name = "gda"

        [[sweep.runs]]
        strategy.name = "nmc"
        strategy.metric = "euclidean"
    """)
    spec = SweepSpec.from_file(path)
    runs = spec.expand()
    assert len(runs) == 2 * 2 * 2  # runs list × stream.n_tasks × seeds, in declared order
    assert [r.overrides for r in runs[:3]] == [
        {"strategy.name": "gda", "stream.n_tasks": 2, "seed": 0},
        {"strategy.name": "gda", "stream.n_tasks": 2, "seed": 1},
        {"strategy.name": "gda", "stream.n_tasks": 5, "seed": 0}]
    gda, nmc = runs[0].config, runs[4].config
    assert gda.strategy_options == {"shrinkage": 0.3}  # the base options of the same strategy
    assert nmc.strategy == "nmc" and nmc.strategy_options == {"metric": "euclidean"}  # gda's dropped
    assert runs[5].config.seed == 1 and runs[6].config.stream_options == {"n_tasks": 5}
    assert runs[4].id.startswith("nmc_metric-euclidean_n_tasks-2_seed-0-")
    assert all(r.dir.parent == tmp_path / "sw" for r in runs)
    assert [r.id for r in SweepSpec.from_file(path).expand()] == [r.id for r in runs]  # stable
    assert len({r.id for r in runs}) == len(runs)
    # a changed base setting changes every run's directory (its hash), never its name part
    path.write_text(path.read_text().replace("batch_size = 128", "batch_size = 64"))
    changed = SweepSpec.from_file(path).expand()
    assert [r.id.rsplit("-", 1)[0] for r in changed] == [r.id.rsplit("-", 1)[0] for r in runs]
    assert not {r.id for r in changed} & {r.id for r in runs}


@pytest.mark.parametrize("sweep, error, match", [
    ('[sweep]\nrepeat = 2\n', ValueError, "no key 'repeat'; valid keys: name"),
    ('[sweep]\n[sweep.grid]\n"strategy.shrinkage" = 0.3\n', ValueError, "must be a non-empty list"),
    ('[sweep]\nseeds = [0]\n[sweep.grid]\nseed = [1]\n', ValueError, "either as 'seeds'"),
    ('[sweep]\n[sweep.grid]\nseed = [1]\n[[sweep.runs]]\nseed = 2\n', ValueError,
     "'seed' is both in"),
    ('[sweep]\nexecutor = "cloud"\n', ValueError, "executor must be one of"),
    ('[sweep]\njobs = "two"\n', TypeError, "'jobs' expects an integer"),
    ('[sweep]\n[sweep.grid]\n"strategy.shrinkage" = [0.3, 0.3]\n', ValueError, "identical runs"),
    ('[sweep]\n[sweep.grid]\n"strateg.x" = [1]\n', ValueError, "unknown section 'strateg'"),
])
def test_bad_sweep_tables_are_named(tmp_path, sweep, error, match):
    path = write_config(tmp_path, sweep)
    with pytest.raises(error, match=match):
        SweepSpec.from_file(path).expand()


def test_dry_run_lists_the_runs_and_validates_every_one(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "plain.toml").write_text(BASE)
    assert main(["sweep", str(tmp_path / "plain.toml")]) == 2
    assert "has no [sweep] table" in capsys.readouterr().err
    path = write_config(tmp_path, '[sweep]\nout = "OUT"\n[sweep.grid]\n"strategy.shrinkage" = [0.1, 0.5]\n')
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sweep exp: 2 runs" in out and "[pending]  strategy.shrinkage=0.1" in out
    assert not (tmp_path / "sw").exists()  # nothing ran
    bad = write_config(tmp_path, '[sweep]\nout = "OUT"\n[sweep.grid]\n"strategy.shrinkge" = [0.1]\n')
    assert main(["sweep", str(bad), "--dry-run"]) == 2
    assert "sweep run shrinkge-0.1-" in capsys.readouterr().err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A real two-task run directory."""
    out = tmp_path_factory.mktemp("done") / "run"
    assert main(["run", "--out", str(out), "--set", "stream.n_tasks=2", "--no-progress"]) == 0
    return out


def test_run_state_is_read_from_the_run_directory(tmp_path, finished_run):
    def copy(name):
        shutil.copytree(finished_run, tmp_path / name)
        return tmp_path / name

    state = run_state(copy("done"))
    assert (state.status, state.completed, state.n_tasks) == ("completed", 2, 2)
    assert state.average_accuracy == json.loads((finished_run / "results.json").read_text())[
        "metrics"]["average_accuracy"]
    assert run_state(tmp_path / "never").status == "pending"
    failed = copy("failed")
    res = json.loads((failed / "results.json").read_text())
    res.update(status="failed", error="ValueError: boom", completed_tasks=1)
    (failed / "results.json").write_text(json.dumps(seal(res)))  # as a run writes it
    assert (run_state(failed).status, run_state(failed).error) == ("failed", "ValueError: boom")
    running = copy("running")
    res["status"] = "running"
    (running / "results.json").write_text(json.dumps(seal(res)))
    write_job(running, state="running", pid=os.getpid())  # a live process on this host
    assert run_state(running).status == "running"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_job(running, state="running", pid=dead.pid)  # its process is gone: interrupted
    assert run_state(running).status == "interrupted"
    write_job(running, state="exited", returncode=-9, error="killed by SIGKILL")
    assert (run_state(running).status, run_state(running).error) == ("failed", "killed by SIGKILL")


def test_local_pool_runs_jobs_at_a_time_and_reports_failures(tmp_path, monkeypatch, capsys):
    """The pool's process handling, with a stand-in for `cl run` that takes 1 s per run."""
    path = write_config(tmp_path, '[sweep]\nout = "OUT"\njobs = 2\n[sweep.grid]\nseed = [0, 1, 2, 3]\n')
    runs = SweepSpec.from_file(path).expand()
    script = textwrap.dedent("""
        import json, sys, time, pathlib
        run = pathlib.Path(sys.argv[1])
        start = time.time(); time.sleep(1.0)
        (run / "span.json").write_text(json.dumps([start, time.time()]))
        if run.name.startswith("seed-2"):
            print("Traceback ...\\nValueError: boom in " + run.name, file=sys.stderr); sys.exit(3)
        (run / "results.json").write_text(json.dumps({"status": "completed", "completed_tasks": 1,
            "tasks": ["t"], "metrics": {"average_accuracy": 0.5}, "error": None}))
    """)
    monkeypatch.setattr(local, "run_command", lambda run_dir, procs=1: [sys.executable, "-c",
                                                                       script, str(run_dir)])
    progress = Progress("exp", runs)
    start = time.perf_counter()
    local.LocalPool(jobs=2).run(runs, progress)
    wall = time.perf_counter() - start
    spans = sorted(json.loads((r.dir / "span.json").read_text()) for r in runs)
    overlap = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert overlap == 2 and wall < 3.9  # two at a time, never more
    out = capsys.readouterr().out
    failed = next(r for r in runs if r.id.startswith("seed-2"))
    assert f"FAILED   {failed.id}: exit status 3: ValueError: boom in {failed.id}" in out
    assert out.count(" done     ") == 3
    assert out.rstrip().endswith("status   3 done, 0 running, 1 failed, 0 waiting")
    assert "status   1 done, 1 running, 0 failed, 2 waiting" in out  # while the first pair runs
    assert (failed.dir / "config.toml").is_file()  # what `cl run --resume` reads
    job = json.loads((failed.dir / "job.json").read_text())
    assert job["state"] == "exited" and job["returncode"] == 3
    assert progress.summary() == {"completed": 3, "running": 0, "failed": 1, "interrupted": 0,
                                  "pending": 0}


def test_run_command_is_cl_run_resume_or_torchrun(tmp_path):
    assert local.run_command(tmp_path)[1:] == ["-m", "cl", "run", "--resume", str(tmp_path),
                                               "--no-progress"]
    cmd = local.run_command(tmp_path, 4)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert cmd[5:8] == ["-m", "cl", "run"]


def _sweep_process(path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "cl", "sweep", str(path), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


@pytest.mark.slow
def test_a_2x2_sweep_runs_two_at_a_time_and_resumes_a_killed_run(tmp_path):
    path = write_config(tmp_path, """
        [sweep]
        out = "OUT"
        jobs = 2
        seeds = [0, 1]

        [sweep.grid]
        strategy.epochs = [40, 41]
    """, base='[stream]\nname = "split-digits"\n[strategy]\nname = "finetune"\n')
    runs = SweepSpec.from_file(path).expand()
    sweep = _sweep_process(path)
    victim = None
    while victim is None and sweep.poll() is None:  # kill a run after its first checkpoint
        for run in runs:
            results = run.dir / "results.json"
            if (run.dir / "checkpoints").is_dir() and any((run.dir / "checkpoints").iterdir()) \
                    and results.is_file() and json.loads(results.read_text())["status"] == "running":
                os.kill(json.loads((run.dir / "job.json").read_text())["pid"], signal.SIGKILL)
                victim = run
                break
        time.sleep(0.05)
    output = sweep.communicate(timeout=600)[0]
    assert victim is not None and sweep.returncode == 1, output
    assert f"FAILED   {victim.id}: killed by SIGKILL" in output
    assert output.count(" done     ") == 3 and "sweep exp: 3 completed, 1 failed" in output
    assert run_state(victim.dir).status == "failed"
    index = read_index(tmp_path / "sw")
    assert [r["id"] for r in index["runs"]] == [r.id for r in runs]
    # the rerun skips the three finished runs and resumes the killed one after its checkpoint
    rerun = _sweep_process(path)
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output
    assert "(3 completed before; 1 to run" in output
    assert f"start    {victim.id} (resuming after task " in output
    assert all(run_state(r.dir).status == "completed" for r in runs)
    assert main(["compare", str(tmp_path / "sw")]) == 0


@pytest.mark.slow
def test_the_slurm_path_runs_through_submitits_local_executor(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # submitit's job processes import cl from here
    path = write_config(tmp_path, """
        [sweep]
        out = "OUT"
        executor = "slurm"
        seeds = [0, 1]

        [sweep.slurm]
        cluster = "local"
        partition = "gpu"
        timeout_min = 20
    """)
    assert main(["sweep", str(path)]) == 0
    out = capsys.readouterr().out
    runs = SweepSpec.from_file(path).expand()
    assert "submitted 2 runs as job array" in out and out.count(" done     ") == 2
    index = read_index(tmp_path / "sw")
    assert index["executor"]["slurm"]["partition"] == "gpu" and all(r["job_id"] for r in index["runs"])
    for run in runs:
        assert run_state(run.dir).status == "completed"
        assert json.loads((run.dir / "job.json").read_text())["executor"] == "slurm"
    assert list((tmp_path / "sw" / "submitit").glob("*_result.pkl"))  # submitit's own records
    assert main(["sweep", str(path), "--status"]) == 0
    assert "completed" in capsys.readouterr().out
    assert main(["sweep", str(path)]) == 0  # nothing left to run
    assert "(2 completed before; 0 to run" in capsys.readouterr().out


@pytest.mark.slow
def test_procs_per_run_runs_each_run_through_torchrun(tmp_path):
    """procs_per_run = 2: each run is `torch.distributed.run --nproc_per_node=2 -m cl run`; the
    2-process run gives the single-process numbers (as tests/runtime/test_distributed.py checks)."""
    path = write_config(tmp_path, '[sweep]\nout = "OUT"\nprocs_per_run = 2\n',
                        base='[stream]\nname = "split-digits"\nn_tasks = 2\n[strategy]\nname = "nmc"\n')
    sweep = _sweep_process(path)
    output = sweep.communicate(timeout=600)[0]
    assert sweep.returncode == 0, output
    (run,) = SweepSpec.from_file(path).expand()
    assert main(["run", "--out", str(tmp_path / "single"), "--set", "stream.n_tasks=2",
                 "--no-progress"]) == 0
    two = json.loads((run.dir / "results.json").read_text())
    one = json.loads((tmp_path / "single" / "results.json").read_text())
    assert two["accuracy_matrix"] == one["accuracy_matrix"]
    assert (two["environment"]["world_size"], one["environment"]["world_size"]) == (2, 1)


def test_slurm_options_are_submitit_parameters(tmp_path, capsys):
    import submitit

    from cl.sweep.slurm import SlurmOptions

    options = SlurmOptions.from_dict({"partition": "gpu", "timeout_min": 90, "account": "lab",
                                      "cpus_per_task": 8, "mem_gb": 32})
    params = options.parameters("digits", jobs=4, gpus_per_run=2)
    assert params == {"name": "cl-digits", "timeout_min": 90, "gpus_per_node": 2, "nodes": 1,
                      "tasks_per_node": 1, "slurm_array_parallelism": 4, "cpus_per_task": 8,
                      "mem_gb": 32.0, "slurm_partition": "gpu", "slurm_account": "lab"}
    # submitit validates every name against its Slurm executor, whichever cluster runs it
    submitit.AutoExecutor(folder=tmp_path, cluster="local").update_parameters(**params)
    with pytest.raises(ValueError, match="no key 'queue'"):
        SlurmOptions.from_dict({"queue": "gpu"})
    if not shutil.which("srun"):
        path = write_config(tmp_path, '[sweep]\nout = "OUT"\nexecutor = "slurm"\n')
        assert main(["sweep", str(path)]) == 2
        assert "needs Slurm's sbatch and srun on PATH" in capsys.readouterr().err
