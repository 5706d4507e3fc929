"""Runs of a sweep as local processes, ``jobs`` at a time (``cl sweep --jobs N``).

Each run is one process, ``python -m cl run --resume RUN_DIR`` (or, with
``procs_per_run > 1``, ``python -m torch.distributed.run --standalone
--nproc_per_node=N -m cl run --resume RUN_DIR``, the torchrun path of a single
multi-GPU run), its output in ``RUN_DIR/sweep.log``. ``--resume`` reads the
run's ``config.toml``, written by the sweep before launching, and continues
after the last checkpointed task, so a rerun of a killed run picks up where it
stopped.

Resources: every process gets ``OMP_NUM_THREADS = cpu_count // jobs`` (unless
set), and with ``gpus_per_run = G`` the process in slot ``k`` sees GPUs
``k·G … k·G+G−1`` of ``CUDA_VISIBLE_DEVICES`` (or of ``0..``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cl.runtime.io import atomic_write_text, open_append
from cl.sweep.index import LOG_FILE, exit_message, log_tail, run_state, write_job
from cl.sweep.progress import Progress
from cl.sweep.spec import PlannedRun

POLL_SECONDS = 0.2
#: Seconds a run process gets to exit after SIGTERM before it is killed.
GRACE_SECONDS = 10.0
#: Signals that stop ``cl sweep`` (and its runs) cleanly, besides Ctrl-C.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP)


class SweepStopped(Exception):
    """``cl sweep`` received ``signum``; its runs were stopped and recorded as interrupted."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


#: While ``defer`` is set, a stop signal is only recorded (``pending``): starting a process and
#: stopping the running ones must not be cut in half.
_SIGNALS: dict[str, Any] = {"defer": False, "pending": None}


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`SweepStopped` while the block runs (main thread
    only; elsewhere the handlers are left alone)."""
    def handler(signum: int, _frame: object) -> None:
        if _SIGNALS["defer"]:
            _SIGNALS["pending"] = signum
            return
        raise SweepStopped(signum)

    try:
        previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def _deferring_signals(*, raise_pending: bool = True) -> Iterator[None]:
    """Hold stop signals while the block runs; then raise the one that came, if asked."""
    _SIGNALS["defer"], _SIGNALS["pending"] = True, None
    try:
        yield
    finally:
        _SIGNALS["defer"] = False
        pending, _SIGNALS["pending"] = _SIGNALS["pending"], None
        if pending is not None and raise_pending:
            raise SweepStopped(pending)


def run_command(run_dir: str | os.PathLike[str], procs_per_run: int = 1) -> list[str]:
    """The command that runs (or resumes) the run in ``run_dir``."""
    cl_run = ["-m", "cl", "run", "--resume", str(Path(run_dir).resolve()), "--no-progress"]
    if procs_per_run > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={procs_per_run}", *cl_run]
    return [sys.executable, *cl_run]


def prepare(run: PlannedRun) -> None:
    """Create the run directory and write its ``config.toml`` (the settings ``--resume`` reads)."""
    atomic_write_text(run.dir / "config.toml", run.config.to_toml(), root=run.dir.parent)


def _gpus(slot: int, per_run: int) -> str:
    visible = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    pool = visible or [str(i) for i in range((slot + 1) * per_run)]
    return ",".join(pool[slot * per_run:(slot + 1) * per_run])


@dataclass
class _Active:
    run: PlannedRun
    process: subprocess.Popen
    slot: int
    log: IO[bytes]


class LocalPool:
    """Run sweep runs as local processes.

    Parameters
    ----------
    jobs : int
        Processes at once.
    procs_per_run : int
        torchrun processes per run (1: a plain ``cl run``).
    gpus_per_run : int
        GPUs each run sees (0: leave ``CUDA_VISIBLE_DEVICES`` alone).
    """

    def __init__(self, jobs: int = 1, procs_per_run: int = 1, gpus_per_run: int = 0) -> None:
        if jobs < 1 or procs_per_run < 1 or gpus_per_run < 0:
            raise ValueError(f"jobs and procs_per_run must be >= 1 and gpus_per_run >= 0, got "
                             f"{jobs}, {procs_per_run}, {gpus_per_run}.")
        self.jobs, self.procs_per_run, self.gpus_per_run = jobs, procs_per_run, gpus_per_run

    def _env(self, slot: int) -> dict[str, str]:
        env = dict(os.environ)
        threads = str(max(1, (os.cpu_count() or 1) // self.jobs))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, threads)
        if self.gpus_per_run:
            env["CUDA_VISIBLE_DEVICES"] = _gpus(slot, self.gpus_per_run)
        return env

    def _start(self, run: PlannedRun, slot: int) -> _Active:
        prepare(run)
        log = open_append(run.dir / LOG_FILE, root=run.dir.parent)
        process = subprocess.Popen(run_command(run.dir, self.procs_per_run), stdout=log,
                                   stderr=subprocess.STDOUT, env=self._env(slot),
                                   start_new_session=True)
        write_job(run.dir, state="running", pid=process.pid, started=time.time(), finished=None,
                  returncode=None, error=None, executor="local")
        return _Active(run, process, slot, log)

    def _finish(self, active: _Active, returncode: int) -> str | None:
        active.log.close()
        error = None if returncode == 0 else exit_message(returncode, log_tail(active.run.dir))
        write_job(active.run.dir, state="exited", returncode=returncode, finished=time.time(),
                  error=error)
        return error

    def run(self, runs: Sequence[PlannedRun], progress: Progress) -> None:
        """Run ``runs`` (in order, ``jobs`` at a time), reporting to ``progress``.

        On ``KeyboardInterrupt`` (Ctrl-C) or :class:`SweepStopped` (SIGTERM, SIGHUP, within
        :func:`stop_on_signals`) the running processes are terminated (killed after
        :data:`GRACE_SECONDS`), their runs recorded as ``interrupted`` (they resume on the
        next invocation), and the exception re-raised: no run is left unsupervised.
        """
        queue = list(runs)
        active: dict[str, _Active] = {}
        free = list(range(self.jobs))
        try:
            while queue or active:
                while queue and free:
                    run = queue.pop(0)
                    progress.started(run)
                    with _deferring_signals():  # a started process is always in `active`
                        active[run.id] = self._start(run, free.pop(0))
                for run_id, entry in list(active.items()):
                    returncode = entry.process.poll()
                    if returncode is None:
                        continue
                    error = self._finish(entry, returncode)
                    del active[run_id]
                    free.append(entry.slot)
                    free.sort()
                    progress.finished(entry.run, None if error is None else
                                      progress_error(entry.run.dir, error))
                progress.poll([a.run for a in active.values()])
                time.sleep(POLL_SECONDS)
        except (KeyboardInterrupt, SweepStopped) as stop:
            self._stop(list(active.values()), "SIGINT (Ctrl-C)" if isinstance(
                stop, KeyboardInterrupt) else signal.Signals(stop.signum).name)
            raise

    def _stop(self, active: list[_Active], why: str) -> None:
        """Terminate ``active`` runs and record them as interrupted (signals held meanwhile)."""
        with _deferring_signals(raise_pending=False):
            for entry in active:
                if entry.process.poll() is None:
                    entry.process.terminate()
            deadline = time.monotonic() + GRACE_SECONDS
            for entry in active:
                try:
                    returncode = entry.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    entry.process.kill()
                    returncode = entry.process.wait()
                entry.log.close()
                write_job(entry.run.dir, state="interrupted", returncode=returncode,
                          finished=time.time(), error=f"interrupted: cl sweep received {why}; "
                          "a rerun resumes it")


def progress_error(run_dir: Path, fallback: str) -> str:
    """The run's own error (``results.json``) when it wrote one, else ``fallback``."""
    own = run_state(run_dir).error
    return f"{own} ({fallback.split(':', 1)[0]})" if own else fallback


__all__ = ["GRACE_SECONDS", "STOP_SIGNALS", "LocalPool", "SweepStopped", "prepare",
           "progress_error", "run_command", "stop_on_signals"]
