"""Runs of a sweep as a Slurm job array, through submitit.

``submitit.AutoExecutor`` submits one array (``executor.map_array``) whose
element ``i`` runs run ``i`` with the same command as the local executor
(:func:`cl.sweep.local.run_command`: ``cl run --resume RUN_DIR``, or torchrun
with ``procs_per_run`` processes for a multi-GPU run). Slurm parameters:
``slurm_partition``, ``gpus_per_node`` (= ``gpus_per_run``), ``timeout_min``,
``cpus_per_task``, ``mem_gb``, ``slurm_array_parallelism`` (= ``jobs``) and
optionally ``slurm_account``, ``slurm_qos``, ``slurm_constraint``.

The job is a :class:`submitit.helpers.Checkpointable`: when Slurm preempts it
or its time limit approaches, submitit requeues the same call (at most
``max_requeue`` times), and ``cl run --resume`` continues after the last
checkpointed task. ``cluster="local"`` (submitit's ``LocalExecutor``, one
process per array element on this machine) or ``"debug"`` run the same path
without a cluster: that is how the tests exercise it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import submitit

from cl.config.options import coerce
from cl.runtime.io import open_append
from cl.sweep.index import LOG_FILE, exit_message, log_tail, write_job
from cl.sweep.local import POLL_SECONDS, prepare, progress_error, run_command
from cl.sweep.progress import Progress
from cl.sweep.spec import PlannedRun

#: submitit job states of a job not yet started
QUEUED_STATES: tuple[str, ...] = ("PENDING", "UNKNOWN", "REQUEUED", "QUEUED", "CONFIGURING")


@dataclass(frozen=True)
class SlurmOptions:
    """The ``[sweep.slurm]`` table.

    Attributes
    ----------
    partition : str or None
        ``--partition``.
    timeout_min : int
        Time limit of each job, minutes.
    cpus_per_task : int or None
    mem_gb : float or None
    account, qos, constraint : str or None
        ``--account``, ``--qos``, ``--constraint``.
    cluster : {"slurm", "local", "debug"}
        submitit backend: a Slurm cluster, or this machine (for trying a sweep out).
    max_requeue : int
        Requeues after preemption or timeout (submitit's ``max_num_timeout``).
    """

    partition: str | None = None
    timeout_min: int = 60
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    cluster: str = "slurm"
    max_requeue: int = 3

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "[sweep.slurm]") -> SlurmOptions:
        hints = {"partition": str | None, "timeout_min": int, "cpus_per_task": int | None,
                 "mem_gb": float | None, "account": str | None, "qos": str | None,
                 "constraint": str | None, "cluster": str, "max_requeue": int}
        unknown = sorted(set(data) - set(hints))
        if unknown:
            raise ValueError(f"{where} has no key {unknown[0]!r}; valid keys: {', '.join(hints)}.")
        options = cls(**{k: coerce(v, hints[k], f"{where} {k!r}") for k, v in data.items()})
        if options.cluster not in ("slurm", "local", "debug"):
            raise ValueError(f"{where} cluster must be 'slurm', 'local' or 'debug', got "
                             f"{options.cluster!r}.")
        if options.timeout_min < 1:
            raise ValueError(f"{where} timeout_min must be >= 1, got {options.timeout_min}.")
        return options

    def check_cluster(self) -> None:
        """``FileNotFoundError`` when ``cluster="slurm"`` but Slurm's commands are not on PATH."""
        if self.cluster == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
            raise FileNotFoundError(
                "--executor slurm needs Slurm's sbatch and srun on PATH: run cl sweep on a "
                "login node of the cluster, or try the path on this machine with --cluster local.")

    def parameters(self, name: str, jobs: int, gpus_per_run: int) -> dict[str, Any]:
        """``AutoExecutor.update_parameters`` keywords."""
        params: dict[str, Any] = {"name": f"cl-{name}", "timeout_min": self.timeout_min,
                                  "gpus_per_node": gpus_per_run, "nodes": 1, "tasks_per_node": 1,
                                  "slurm_array_parallelism": jobs}
        optional = {"cpus_per_task": self.cpus_per_task, "mem_gb": self.mem_gb,
                    "slurm_partition": self.partition, "slurm_account": self.account,
                    "slurm_qos": self.qos, "slurm_constraint": self.constraint}
        params.update({k: v for k, v in optional.items() if v is not None})
        return params


class RunJob(submitit.helpers.Checkpointable):
    """One sweep run inside a Slurm job: the run's process, its log, its ``job.json``.

    Requeued as is on preemption or timeout (``Checkpointable``); the run resumes
    from its checkpoints.
    """

    def __call__(self, run_dir: str, command: list[str]) -> str:
        path = Path(run_dir)
        env = submitit.JobEnvironment() if os.environ.get("SUBMITIT_FOLDER") else None
        with open_append(path / LOG_FILE, root=path.parent) as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            write_job(path, state="running", pid=process.pid, started=time.time(), finished=None,
                      returncode=None, error=None, executor="slurm",
                      job_id=getattr(env, "job_id", None))
            returncode = process.wait()
        error = None if returncode == 0 else exit_message(returncode, log_tail(path))
        write_job(path, state="exited", returncode=returncode, finished=time.time(), error=error)
        if error:
            raise RuntimeError(f"run {path.name} failed: {error}")
        return run_dir


def submit(runs: Sequence[PlannedRun], options: SlurmOptions, *, name: str, folder: Path,
           jobs: int, procs_per_run: int, gpus_per_run: int) -> dict[str, Any]:
    """Submit ``runs`` as one job array; return ``{run id: submitit job}``."""
    for run in runs:
        prepare(run)
    executor = submitit.AutoExecutor(folder=str(folder), cluster=options.cluster,
                                     slurm_max_num_timeout=options.max_requeue)
    executor.update_parameters(**options.parameters(name, jobs, gpus_per_run))
    submitted = executor.map_array(
        RunJob(), [str(r.dir.resolve()) for r in runs],
        [run_command(r.dir, max(procs_per_run, 1)) for r in runs])
    return {run.id: job for run, job in zip(runs, submitted, strict=True)}


def watch(jobs: dict[str, Any], runs: Sequence[PlannedRun], progress: Progress) -> None:
    """Report the submitted runs until every job has ended."""
    by_id = {r.id: r for r in runs}
    waiting = dict(jobs)
    started: set[str] = set()
    while waiting:
        for run_id, job in list(waiting.items()):
            if run_id not in started and job.state not in QUEUED_STATES:
                started.add(run_id)
                progress.started(by_id[run_id], f" (job {job.job_id})")
            try:
                finished = job.done()
            except Exception:  # noqa: BLE001 - submitit's debug jobs raise the job's own error here
                finished = True
            if not finished:
                continue
            del waiting[run_id]
            exception = job.exception()
            error = None if exception is None else str(exception).strip().splitlines()[-1]
            progress.finished(by_id[run_id], None if error is None else
                              progress_error(by_id[run_id].dir, error))
        progress.poll([by_id[i] for i in waiting if i in started])
        time.sleep(POLL_SECONDS)


def describe(options: SlurmOptions) -> dict[str, Any]:
    """The options as recorded in the sweep index."""
    return asdict(options)


__all__ = ["RunJob", "SlurmOptions", "describe", "submit", "watch"]
