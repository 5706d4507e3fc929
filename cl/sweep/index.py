"""The sweep directory: its index file and the state of every run.

``<sweep dir>/sweep.json`` (the *index*) lists the sweep's runs: id, directory,
overrides and, for Slurm, the job id; it is rewritten atomically on every
``cl sweep`` invocation. A run's state is read from its own directory, which is
the truth whoever ran it (a local process, a Slurm job, a person):

``completed``
    ``results.json`` says so; a rerun skips it.
``failed``
    ``results.json`` says so (its ``error``), or the process ended with a
    non-zero status before writing results (``job.json``: exit status and the
    last lines of ``sweep.log``); a rerun resumes it from its last checkpoint.
``running``
    ``job.json`` names a live process (this host) or a job still queued or
    running (Slurm).
``interrupted``
    results of unfinished tasks but no live process (killed, preempted);
    a rerun resumes it.
``pending``
    not started.

``job.json`` is written by the executors: ``{"state": "running"|"exited", "pid",
"host", "returncode", "error", "started", "finished", "job_id"}``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cl.runtime.io import atomic_write_json

INDEX_FILE = "sweep.json"
JOB_FILE = "job.json"
LOG_FILE = "sweep.log"
STATES: tuple[str, ...] = ("completed", "running", "failed", "interrupted", "pending")


@dataclass(frozen=True)
class RunState:
    """What a run directory says about its run.

    Attributes
    ----------
    status : str
        One of :data:`STATES`.
    completed, n_tasks : int
        Tasks finished and in the stream (0 when unknown).
    error : str or None
        The failure's message.
    seconds : float or None
        Wall time of the last process (from ``job.json``).
    average_accuracy : float or None
    """

    status: str
    completed: int = 0
    n_tasks: int = 0
    error: str | None = None
    seconds: float | None = None
    average_accuracy: float | None = None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (and is not a zombie we cannot see)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_message(returncode: int, log_tail: str) -> str:
    """``"killed by SIGKILL"`` or ``"exit status 2"``, plus the log's last error line."""
    if returncode < 0:
        try:
            what = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            what = f"killed by signal {-returncode}"
    else:
        what = f"exit status {returncode}"
    lines = [ln.strip() for ln in log_tail.splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "")
    return f"{what}: {last}" if last else what


def log_tail(run_dir: Path, n_bytes: int = 4000) -> str:
    """The end of ``RUN_DIR/sweep.log`` (empty when missing)."""
    path = Path(run_dir) / LOG_FILE
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - n_bytes))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def write_job(run_dir: Path, **fields: Any) -> None:
    """Update ``RUN_DIR/job.json`` with ``fields`` (host and time added)."""
    path = Path(run_dir) / JOB_FILE
    job = _read_json(path) or {}
    job.update(fields, host=socket.gethostname(), updated=time.time())
    atomic_write_json(path, job, root=path.parent.parent)


def run_state(run_dir: str | os.PathLike[str]) -> RunState:
    """The state of one run directory (see module docstring)."""
    run_dir = Path(run_dir)
    results = _read_json(run_dir / "results.json")
    job = _read_json(run_dir / JOB_FILE) or {}
    seconds = None
    if job.get("started") and job.get("finished"):
        seconds = float(job["finished"]) - float(job["started"])
    done = n = 0
    accuracy = error = None
    if results is not None:
        done, n = int(results.get("completed_tasks", 0)), len(results.get("tasks", []))
        accuracy = (results.get("metrics") or {}).get("average_accuracy")
        error = results.get("error")
        if results.get("status") == "completed":
            return RunState("completed", done, n, None, seconds, accuracy)
    live = job.get("state") == "running" and (
        job.get("host") != socket.gethostname() or pid_alive(int(job.get("pid", 0)) or -1))
    if live:
        return RunState("running", done, n, None, None, accuracy)
    if job.get("state") == "exited" and job.get("returncode", 0) != 0:
        return RunState("failed", done, n, job.get("error") or error, seconds, accuracy)
    if results is not None and results.get("status") == "failed":
        return RunState("failed", done, n, error, seconds, accuracy)
    if results is not None or job:
        return RunState("interrupted", done, n, error, seconds, accuracy)
    return RunState("pending")


def write_index(sweep_dir: Path, name: str, source: str | None, runs: Sequence[Any],
                executor: dict[str, Any], job_ids: dict[str, str] | None = None) -> Path:
    """Write ``<sweep dir>/sweep.json`` for ``runs`` (:class:`~cl.sweep.spec.PlannedRun`)."""
    previous = read_index(sweep_dir) or {}
    known = {r["id"]: r.get("job_id") for r in previous.get("runs", [])}
    job_ids = {**known, **(job_ids or {})}
    index = {
        "format": 1, "name": name, "config": source, "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "executor": executor,
        "runs": [{"id": r.id, "dir": r.id, "overrides": r.overrides, "job_id": job_ids.get(r.id)}
                 for r in runs],
    }
    path = sweep_dir / INDEX_FILE
    atomic_write_json(path, index, root=sweep_dir)
    return path


def read_index(sweep_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The index of a sweep directory, or None when there is none."""
    return _read_json(Path(sweep_dir) / INDEX_FILE)


__all__ = ["INDEX_FILE", "JOB_FILE", "LOG_FILE", "STATES", "RunState", "exit_message", "log_tail",
           "pid_alive", "read_index", "run_state", "write_index", "write_job"]
