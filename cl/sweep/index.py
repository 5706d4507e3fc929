"""The sweep directory: its index file and the state of every run.

``<sweep dir>/sweep.json`` (the *index*) lists the sweep's runs: id, directory,
overrides and, for Slurm, the job id; it is rewritten atomically on every
``cl sweep`` invocation. A run's state is read from its own directory, which is
the truth whoever ran it (a local process, a Slurm job, a person):

``completed``
    ``results.json`` says so and verifies against its checksum (as ``cl compare``
    checks it, :func:`cl.runtime.integrity.verify`); a rerun skips it.
``failed``
    ``results.json`` says so (its ``error``), or the process ended with a
    non-zero status before writing results (``job.json``: exit status and the
    last lines of ``sweep.log``), or ``results.json`` does not verify (edited or
    damaged after the run); a rerun resumes it from its last checkpoint, which
    rewrites ``results.json``.
``running``
    ``job.json`` names a live process (this host) or a job still queued or
    running (Slurm).
``interrupted``
    results of unfinished tasks but no live process (killed, preempted), or
    stopped by a signal to ``cl sweep`` (``job.json`` state ``interrupted``);
    a rerun resumes it.
``pending``
    not started.

``job.json`` is written by the executors: ``{"state": "running"|"exited"|"interrupted", "pid",
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

from cl.runtime.integrity import verify
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


#: ``run_state(...).error`` of a run whose results.json does not verify.
MODIFIED = ("results.json does not match its sha256 checksum (edited or damaged after the run), "
            "so it is not counted as completed; a rerun resumes the run from its checkpoints "
            "and rewrites it")


def _read_json(path: Path) -> Any:
    """The JSON value in ``path``; None when missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _verified(results: Any) -> bool:
    """Whether a parsed ``results.json`` is an object whose checksum verifies (format 1,
    written before checksums, is accepted as ``cl compare`` accepts it)."""
    if not isinstance(results, dict):
        return False
    verdict = verify(results)
    return verdict == "ok" or (verdict == "missing" and results.get("format", 1) == 1)


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
    job = _read_json(path)
    job = job if isinstance(job, dict) else {}
    job.update(fields, host=socket.gethostname(), updated=time.time())
    atomic_write_json(path, job, root=path.parent.parent)


def run_state(run_dir: str | os.PathLike[str]) -> RunState:
    """The state of one run directory (see module docstring)."""
    run_dir = Path(run_dir)
    results = _read_json(run_dir / "results.json")
    job = _read_json(run_dir / JOB_FILE)
    job = job if isinstance(job, dict) else {}
    seconds = None
    try:
        if job.get("started") and job.get("finished"):
            seconds = float(job["finished"]) - float(job["started"])
    except (TypeError, ValueError):
        seconds = None
    done = n = 0
    accuracy = error = None
    if results is not None and not _verified(results):
        if _live(job):
            return RunState("running")
        return RunState("failed", error=MODIFIED, seconds=seconds)
    if results is not None:
        done, n = int(results.get("completed_tasks", 0)), len(results.get("tasks", []))
        accuracy = (results.get("metrics") or {}).get("average_accuracy")
        error = results.get("error")
        if results.get("status") == "completed":
            return RunState("completed", done, n, None, seconds, accuracy)
    if _live(job):
        return RunState("running", done, n, None, None, accuracy)
    if job.get("state") == "interrupted":
        return RunState("interrupted", done, n, job.get("error") or error, seconds, accuracy)
    if job.get("state") == "exited" and job.get("returncode", 0) != 0:
        return RunState("failed", done, n, job.get("error") or error, seconds, accuracy)
    if results is not None and results.get("status") == "failed":
        return RunState("failed", done, n, error, seconds, accuracy)
    if results is not None or job:
        return RunState("interrupted", done, n, error, seconds, accuracy)
    return RunState("pending")


def _live(job: dict[str, Any]) -> bool:
    """Whether ``job.json`` names a process still running (on another host: assumed so)."""
    if job.get("state") != "running":
        return False
    pid = job.get("pid")
    return job.get("host") != socket.gethostname() or (
        isinstance(pid, int) and pid > 0 and pid_alive(pid))


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


def read_index(sweep_dir: str | os.PathLike[str], *, strict: bool = False) -> dict[str, Any] | None:
    """The index of a sweep directory, or None when there is none.

    An index of the wrong shape (not an object whose ``runs`` is a list of objects
    with a string ``id``) is None too, or with ``strict`` a ``ValueError`` naming the file.
    """
    path = Path(sweep_dir) / INDEX_FILE
    index = _read_json(path)
    runs = index.get("runs", []) if isinstance(index, dict) else None
    if isinstance(runs, list) and all(isinstance(r, dict) and isinstance(r.get("id"), str)
                                      for r in runs):
        return index
    if strict and path.exists():
        raise ValueError(f"{str(path)!r} is not a sweep index (an object whose 'runs' is a list "
                         "of {\"id\": ...} tables); it was damaged or edited. Delete it: the next "
                         "cl sweep writes it again (run states are read from the run directories).")
    return None


__all__ = ["INDEX_FILE", "JOB_FILE", "LOG_FILE", "MODIFIED", "STATES", "RunState", "exit_message", "log_tail",
           "pid_alive", "read_index", "run_state", "write_index", "write_job"]
