"""What a sweep shows while it runs: one line per event, and a final table.

Events are printed as they happen, prefixed by the count of finished runs::

    sweep digits: 4 runs -> runs/sweeps/digits (0 completed before; 4 to run, local, 2 at a time)
    [0/4] start    gda_seed-0-1a2b3c4d
    [0/4] progress gda_seed-0-1a2b3c4d: task 3/5
    [1/4] done     gda_seed-0-1a2b3c4d  4.1 s  avg acc 92.3 %
          status   1 done, 1 running, 0 failed, 2 waiting
    [1/4] FAILED   nmc_seed-1-5e6f7a8b: exit status 1: ValueError: ...
          status   1 done, 2 running, 1 failed, 0 waiting
    sweep digits: 3 completed, 1 failed

Lines go to standard output as plain text (readable in a terminal, a log file
or a Slurm output file alike); the final table comes from
:func:`status_table`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.table import Table

from cl.reporting.terminal import print_table
from cl.sweep.index import STATES, RunState, run_state
from cl.sweep.spec import PlannedRun


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


class Progress:
    """Prints the events of one sweep invocation.

    Parameters
    ----------
    name : str
        Sweep name.
    runs : sequence of PlannedRun
        Every run of the sweep (finished ones count as done from the start).
    stream : text file
        Where lines go (default standard output).
    """

    def __init__(self, name: str, runs: Sequence[PlannedRun], stream: TextIO | None = None) -> None:
        self.name, self.runs = name, list(runs)
        self.out = stream or sys.stdout
        self.done = sum(run_state(r.dir).status == "completed" for r in self.runs)
        self.failed = 0
        self._tasks: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._running: set[str] = set()

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def header(self, to_run: int, executor: str, jobs: int) -> None:
        self.line(f"sweep {self.name}: {len(self.runs)} runs -> {self.runs[0].dir.parent if self.runs else '.'} "
                  f"({self.done} completed before; {to_run} to run, {executor}, {jobs} at a time)")

    def prefix(self) -> str:
        return f"[{self.done}/{len(self.runs)}]"

    def started(self, run: PlannedRun, where: str = "") -> None:
        state = run_state(run.dir)
        resume = (f" (resuming after task {state.completed}/{state.n_tasks})"
                  if state.completed else "")
        self._started[run.id] = time.perf_counter()
        self._tasks[run.id] = state.completed
        self._running.add(run.id)
        self.line(f"{self.prefix()} start    {run.id}{resume}{where}")

    def poll(self, running: Sequence[PlannedRun]) -> None:
        """Print a line for every running run that finished another task since the last poll."""
        for run in running:
            state = run_state(run.dir)
            if state.n_tasks and state.completed > self._tasks.get(run.id, 0):
                self._tasks[run.id] = state.completed
                self.line(f"{self.prefix()} progress {run.id}: task {state.completed}/{state.n_tasks}")

    def finished(self, run: PlannedRun, error: str | None = None) -> RunState:
        """Report a run whose process ended; return its state."""
        state = run_state(run.dir)
        seconds = time.perf_counter() - self._started.get(run.id, time.perf_counter())
        if state.status == "completed":
            self.done += 1
            self.line(f"{self.prefix()} done     {run.id}  {seconds:.1f} s  avg acc "
                      f"{_pct(state.average_accuracy)} %")
        else:
            self.failed += 1
            message = error or state.error or state.status
            self.line(f"{self.prefix()} FAILED   {run.id}: {message}")
        self._running.discard(run.id)
        waiting = len(self.runs) - self.done - self.failed - len(self._running)
        self.line(f"{' ' * len(self.prefix())} status   {self.done} done, {len(self._running)} "
                  f"running, {self.failed} failed, {waiting} waiting")
        return state

    def summary(self) -> dict[str, int]:
        """Print and return the count of runs in each state."""
        counts = dict.fromkeys(STATES, 0)
        for run in self.runs:
            counts[run_state(run.dir).status] += 1
        self.line(f"sweep {self.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n
                                                     or s in ("completed", "failed")))
        return counts


def status_table(name: str, runs: Sequence[PlannedRun], job_ids: dict[str, str] | None = None,
                 console: Console | None = None) -> dict[str, int]:
    """Print every run's state as a table; return the count per state."""
    table = Table(title=f"sweep {name}")
    for col in ("run", "status", "tasks", "avg acc (%)", "seconds", "job", "error"):
        table.add_column(col, justify="right" if col in ("tasks", "avg acc (%)", "seconds") else "left")
    counts = dict.fromkeys(STATES, 0)
    for run in runs:
        s = run_state(run.dir)
        counts[s.status] += 1
        table.add_row(run.id, s.status, f"{s.completed}/{s.n_tasks}" if s.n_tasks else "—",
                      _pct(s.average_accuracy), "—" if s.seconds is None else f"{s.seconds:.1f}",
                      (job_ids or {}).get(run.id) or "", (s.error or "").splitlines()[0] if s.error else "")
    print_table(table, console or Console())
    return counts


__all__ = ["Progress", "status_table"]
