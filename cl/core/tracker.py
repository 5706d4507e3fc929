"""The tracker: accuracy matrix, zero-shot row, per-task compute and records.

It only stores; :mod:`cl.core.metrics` turns the matrix into numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from cl.core import metrics
from cl.core.results import matrix_from_json, to_json
from cl.errors import ProtocolError


class Tracker:
    """Accuracy matrix ``A`` (T, T), zero-shot vector ``z`` (T,), compute and records.

    Parameters
    ----------
    task_names : sequence of str, length T

    Attributes
    ----------
    matrix : np.ndarray, shape (T, T)
        ``matrix[t, j]`` = accuracy on task j after training through task t; NaN
        until evaluated.
    zero_shot : np.ndarray, shape (T,)
        Accuracy of each task before any training; NaN until evaluated.
    compute : list of dict, length T
        Per-task counters (``train_seconds``, ``eval_seconds``, ``examples_seen``,
        ``trainable_parameters``, ...); empty dict until the task is trained.
    records : list of dict, length T
        Values strategies and plugins recorded with ``ctx.record`` during task t.
    """

    def __init__(self, task_names: Sequence[str]) -> None:
        self.task_names = list(task_names)
        T = len(self.task_names)
        if T == 0:
            raise ValueError("Tracker needs at least one task.")
        self.matrix = np.full((T, T), np.nan)
        self.zero_shot = np.full(T, np.nan)
        self.compute: list[dict[str, float]] = [{} for _ in range(T)]
        self.records: list[dict[str, Any]] = [{} for _ in range(T)]

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    def record_accuracy(self, row: int | None, task: int, accuracy: float) -> None:
        """Store accuracy on ``task`` after training through ``row`` (``None``: zero-shot)."""
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy must be in [0, 1], got {accuracy}.")
        if row is None:
            self.zero_shot[task] = accuracy
        else:
            self.matrix[row, task] = accuracy

    def add_compute(self, task: int, **counters: float) -> None:
        """Add counters to task ``task``'s compute record (summed with earlier values)."""
        slot = self.compute[task]
        for key, value in counters.items():
            slot[key] = slot.get(key, 0.0) + float(value)

    def set_compute(self, task: int, **counters: float) -> None:
        """Set (not add) counters of task ``task`` (e.g. peak memory)."""
        self.compute[task].update({k: float(v) for k, v in counters.items()})

    def record(self, task: int, key: str, value: Any) -> None:
        """Store a JSON-able value recorded during task ``task``.

        Raises
        ------
        ProtocolError
            ``value`` cannot be written to ``results.json`` (an object, an infinity).
        """
        try:
            json.dumps(to_json(value), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ProtocolError(
                f"ctx.record({key!r}, {value!r:.60}) cannot be stored in results.json ({err}); "
                "record finite numbers, strings, or lists and dicts of them."
            ) from err
        self.records[task][key] = value

    def completed_rows(self) -> int:
        """Number of leading rows fully evaluated (tasks finished)."""
        done = 0
        for t in range(self.n_tasks):
            if np.isnan(self.matrix[t]).all():
                break
            done = t + 1
        return done

    def summary(self) -> dict[str, float]:
        """:func:`cl.core.metrics.summarize` of the rows evaluated so far."""
        rows = max(self.completed_rows(), 1)
        z = None if np.isnan(self.zero_shot).all() else self.zero_shot[:rows]
        return metrics.summarize(self.matrix[:rows, :rows], z)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (NaN → null, through :func:`cl.core.results.to_json`)."""
        return to_json({
            "tasks": self.task_names,
            "accuracy_matrix": self.matrix,
            "zero_shot": None if np.isnan(self.zero_shot).all() else self.zero_shot,
            "compute": self.compute,
            "records": self.records,
        })

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Tracker:
        """Inverse of :meth:`to_dict`."""
        tracker = cls(state["tasks"])
        tracker.matrix = matrix_from_json(state["accuracy_matrix"])
        if state.get("zero_shot") is not None:
            tracker.zero_shot = matrix_from_json(state["zero_shot"])
        tracker.compute = [dict(c) for c in state["compute"]]
        tracker.records = [dict(r) for r in state["records"]]
        return tracker
