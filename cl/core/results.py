"""The results schema: what ``results.json`` holds, and the one place NaN meets JSON's null.

Keys of ``results.json`` (see README): ``stream``, ``strategy``, ``backbone``,
``backbone_has_text``, ``backbone_fingerprint``, ``seed``, ``scenario``, ``status`` (``running``,
``failed``, ``completed``), ``error``, ``tasks``, ``completed_tasks``,
``accuracy_matrix`` (T×T, null where not evaluated), ``zero_shot`` (T or
null), ``metrics``, ``compute``, ``records``, ``class_names``, ``years``,
``config``, ``environment``, plus a run's extras (``skipped_tasks``...).

JSON has no NaN: :func:`to_json` writes NaN as ``null`` and :func:`matrix_from_json`
reads ``null`` back as NaN. Nothing else in the library converts.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cl.runtime.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from cl.core.tracker import Tracker

RESULTS_FILE = "results.json"
MATRIX_FILE = "accuracy_matrix.csv"


def to_json(value: Any) -> Any:
    """``value`` with every NaN (float or numpy) replaced by None, recursively; numpy numbers
    and arrays become Python numbers and lists."""
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def matrix_from_json(rows: Sequence[Any] | None) -> np.ndarray | None:
    """A JSON matrix or vector (null for NaN) as a float array; None stays None."""
    if rows is None:
        return None
    return np.array(_nan_for_none(rows), dtype=float)


def _nan_for_none(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_nan_for_none(v) for v in value]
    return np.nan if value is None else value


@dataclass(frozen=True)
class RunInfo:
    """What identifies a run in its results, besides the tracker's numbers.

    Attributes
    ----------
    stream, strategy, backbone : str
        Stream name, strategy label (:func:`strategies.loading.strategy_label`: the
        registered name, else the class name, from the command line and from Python
        alike) and backbone spec.
    backbone_fingerprint : str
        Hash of the backbone's weights.
    seed : int
    scenario : str
    class_names : list of list of str
        Per task, its class names.
    years : list of int or None
    backbone_has_text : bool
        Whether the backbone has a text tower; without one the row before training
        is the untrained model, not a zero-shot classifier.
    config : dict or None
        The resolved config (TOML layout).
    environment : dict
        Library versions, device, git commit.
    extra : dict
        Merged into the results (``skipped_tasks``...).
    """

    stream: str
    strategy: str
    backbone: str
    backbone_fingerprint: str
    seed: int
    scenario: str
    class_names: list[list[str]]
    years: list[int | None]
    backbone_has_text: bool = True
    config: dict[str, Any] | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def build_results(tracker: Tracker, info: RunInfo, *, status: str,
                  error: str | None = None) -> dict[str, Any]:
    """The ``results.json`` dict of a (possibly unfinished) run."""
    state = tracker.to_dict()
    return to_json({
        "stream": info.stream,
        "strategy": info.strategy,
        "backbone": info.backbone,
        "backbone_has_text": info.backbone_has_text,
        "backbone_fingerprint": info.backbone_fingerprint,
        "seed": info.seed,
        "scenario": info.scenario,
        "status": status,
        "error": error,
        "tasks": state["tasks"],
        "completed_tasks": tracker.completed_rows(),
        "accuracy_matrix": state["accuracy_matrix"],
        "zero_shot": state["zero_shot"],
        "metrics": tracker.summary(),
        "compute": state["compute"],
        "records": state["records"],
        "class_names": info.class_names,
        "years": info.years,
        "config": info.config,
        "environment": info.environment,
        **info.extra,
    })


def write_results(out_dir: str | Path, results: dict[str, Any]) -> None:
    """Write ``results.json`` and ``accuracy_matrix.csv`` atomically (compact while running)."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / RESULTS_FILE, results, compact=results.get("status") == "running")
    atomic_write_text(out_dir / MATRIX_FILE, matrix_csv(results))


def matrix_csv(results: dict[str, Any]) -> str:
    """The accuracy matrix as CSV with a header row of task names and a zero-shot row."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["after_task", *results["tasks"]])
    if results.get("zero_shot") is not None:
        w.writerow(["zero_shot", *["" if v is None else v for v in results["zero_shot"]]])
    for name, row in zip(results["tasks"], results["accuracy_matrix"], strict=True):
        w.writerow([name, *["" if v is None else v for v in row]])
    return buf.getvalue()


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """Read ``RUN_DIR/results.json``; clear errors for a missing or broken file."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist; is {str(run_dir)!r} a run directory?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid JSON: {err}.") from err
