"""The tracker: score matrices, zero-shot rows, per-task compute and records.

It only stores; :mod:`cl.core.metrics` turns the matrices into numbers. A
classification run has one score, top-1 accuracy (:attr:`Tracker.matrix`); an
image-text run has several (Recall@K per direction, mean recall, mAP@K) and a
primary one (``score``) that :attr:`Tracker.matrix` holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cl.core import metrics
from cl.core.results import matrix_from_json, to_json
from cl.errors import ProtocolError

ACCURACY = "accuracy"


class Tracker:
    """Score matrices ``A`` (T, T), zero-shot vectors ``z`` (T,), compute and records.

    Parameters
    ----------
    task_names : sequence of str, length T
    score : str
        Name of the primary score (``"accuracy"``; ``"mean_recall"`` for image-text runs).
    scores : sequence of str
        Every score recorded, the primary one among them (default: only ``score``).

    Attributes
    ----------
    matrix : np.ndarray, shape (T, T)
        ``matrix[t, j]`` = the primary score (accuracy) on task j after training
        through task t; NaN until evaluated.
    zero_shot : np.ndarray, shape (T,)
        The primary score of each task before any training; NaN until evaluated.
    compute : list of dict, length T
        Per-task counters (``train_seconds``, ``eval_seconds``, ``examples_seen``,
        ``trainable_parameters``, ...); empty dict until the task is trained.
    records : list of dict, length T
        Values strategies and plugins recorded with ``ctx.record`` during task t.
    scores : dict of str to np.ndarray, shape (T, T)
        Every score's matrix; ``scores[score] is matrix``.
    zero_shot_scores : dict of str to np.ndarray, shape (T,)
        Every score's row before training; ``zero_shot_scores[score] is zero_shot``.
    """

    def __init__(self, task_names: Sequence[str], *, score: str = ACCURACY,
                 scores: Sequence[str] = ()) -> None:
        self.task_names = list(task_names)
        T = len(self.task_names)
        if T == 0:
            raise ValueError("Tracker needs at least one task.")
        names = tuple(scores) or (score,)
        if score not in names or len(set(names)) != len(names):
            raise ValueError(f"scores {list(names)} must be distinct and hold the primary score "
                             f"{score!r}.")
        self.score = score
        self.scores = {name: np.full((T, T), np.nan) for name in names}
        self.zero_shot_scores = {name: np.full(T, np.nan) for name in names}
        self.matrix = self.scores[score]
        self.zero_shot = self.zero_shot_scores[score]
        self.compute: list[dict[str, float]] = [{} for _ in range(T)]
        self.records: list[dict[str, Any]] = [{} for _ in range(T)]

    @property
    def score_names(self) -> tuple[str, ...]:
        """Names of the recorded scores, the primary one included."""
        return tuple(self.scores)

    @property
    def several_scores(self) -> bool:
        """Whether this tracker records more than top-1 accuracy (``results.json`` then holds
        ``score``, ``scores``, ``zero_shot_scores`` and ``score_metrics``)."""
        return self.score_names != (ACCURACY,)

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

    def record_scores(self, row: int | None, task: int, values: Mapping[str, float]) -> None:
        """Store every score of ``task`` after training through ``row`` (``None``: zero-shot).

        Raises
        ------
        ValueError
            A score of this tracker is missing from ``values``, an unknown one is
            given, or a value lies outside [0, 1].
        """
        if set(values) != set(self.scores):
            raise ValueError(f"scores {sorted(values)} do not match the tracker's "
                             f"{sorted(self.scores)}.")
        for name, value in values.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"score {name!r} must be in [0, 1], got {value}.")
        for name, value in values.items():
            if row is None:
                self.zero_shot_scores[name][task] = value
            else:
                self.scores[name][row, task] = value

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

    def score_summaries(self) -> dict[str, dict[str, float]]:
        """:func:`cl.core.metrics.summarize` of every score's matrix (rows evaluated so far)."""
        rows = max(self.completed_rows(), 1)
        out = {}
        for name, matrix in self.scores.items():
            z = self.zero_shot_scores[name]
            out[name] = metrics.summarize(matrix[:rows, :rows],
                                          None if np.isnan(z).all() else z[:rows])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (NaN → null, through :func:`cl.core.results.to_json`); the
        ``accuracy_matrix`` and ``zero_shot`` keys hold the primary score."""
        state = {
            "tasks": self.task_names,
            "accuracy_matrix": self.matrix,
            "zero_shot": None if np.isnan(self.zero_shot).all() else self.zero_shot,
            "compute": self.compute,
            "records": self.records,
        }
        if self.several_scores:
            state["score"] = self.score
            state["scores"] = dict(self.scores)
            state["zero_shot_scores"] = {k: None if np.isnan(z).all() else z
                                         for k, z in self.zero_shot_scores.items()}
        return to_json(state)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Tracker:
        """Inverse of :meth:`to_dict`."""
        if "scores" in state:
            tracker = cls(state["tasks"], score=state["score"], scores=list(state["scores"]))
            for name, matrix in state["scores"].items():
                tracker.scores[name][:] = matrix_from_json(matrix)
                zero = state["zero_shot_scores"].get(name)
                if zero is not None:
                    tracker.zero_shot_scores[name][:] = matrix_from_json(zero)
            tracker.compute = [dict(c) for c in state["compute"]]
            tracker.records = [dict(r) for r in state["records"]]
            return tracker
        tracker = cls(state["tasks"])
        tracker.matrix[:] = matrix_from_json(state["accuracy_matrix"])
        if state.get("zero_shot") is not None:
            tracker.zero_shot[:] = matrix_from_json(state["zero_shot"])
        tracker.compute = [dict(c) for c in state["compute"]]
        tracker.records = [dict(r) for r in state["records"]]
        return tracker
