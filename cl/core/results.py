"""The results schema: what ``results.json`` holds, and the one place NaN meets JSON's null.

Keys of ``results.json`` (see README): ``format`` (2: with a checksum), ``stream``,
``strategy``, ``backbone``, ``backbone_has_text``, ``backbone_fingerprint``, ``seed``,
``scenario``, ``status`` (``running``,
``failed``, ``completed``), ``error``, ``tasks``, ``completed_tasks``,
``accuracy_matrix`` (T×T, null where not evaluated), ``zero_shot`` (T or
null), ``metrics``, ``compute``, ``records``, ``class_names``, ``years``,
``config``, ``environment``, ``code`` (path and SHA-256 of user code files, when
the config names any), plus a run's extras (``skipped_tasks``...), and last
``sha256``, the file's content checksum (:mod:`cl.runtime.integrity`: SHA-256
of the canonical JSON of every other key).

A run scored by more than accuracy (image-text retrieval) also has ``score``
(the primary score's name, e.g. ``"mean_recall"``; ``accuracy_matrix``,
``zero_shot`` and ``metrics`` are then that score's), ``scores`` (score name →
T×T matrix), ``zero_shot_scores`` (score name → T or null) and
``score_metrics`` (score name → :func:`cl.core.metrics.summarize` of its
matrix); ``score_matrices.csv`` holds every matrix.

JSON has no NaN: :func:`to_json` writes NaN as ``null`` and :func:`matrix_from_json`
reads ``null`` back as NaN. Nothing else in the library converts.

:func:`load_results` verifies the checksum (a changed file is refused, or with
``allow_modified`` marked ``"integrity": "modified"``) and the schema (one
matrix row and column per task...), so a damaged or edited file is an error
naming the problem, never a traceback or silently reported numbers.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cl.errors import IntegrityError
from cl.runtime.integrity import DIGEST_FIELD, seal, verify
from cl.runtime.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from cl.core.tracker import Tracker

RESULTS_FILE = "results.json"
MATRIX_FILE = "accuracy_matrix.csv"
SCORES_FILE = "score_matrices.csv"
#: 2: sealed with a ``sha256`` (a file of format 2 without one was damaged).
FORMAT = 2


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
        "format": FORMAT,
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
        **({"score": state["score"], "scores": state["scores"],
            "zero_shot_scores": state["zero_shot_scores"],
            "score_metrics": tracker.score_summaries()} if tracker.several_scores else {}),
        "compute": state["compute"],
        "records": state["records"],
        "class_names": info.class_names,
        "years": info.years,
        "config": info.config,
        "environment": info.environment,
        **info.extra,
    })


def write_results(out_dir: str | Path, results: dict[str, Any]) -> None:
    """Write ``results.json`` (with its ``sha256``) and ``accuracy_matrix.csv`` atomically
    (compact while running)."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / RESULTS_FILE, seal(results),
                      compact=results.get("status") == "running", root=out_dir)
    atomic_write_text(out_dir / MATRIX_FILE, matrix_csv(results), root=out_dir)
    if "scores" in results:
        atomic_write_text(out_dir / SCORES_FILE, scores_csv(results), root=out_dir)


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


def scores_csv(results: dict[str, Any]) -> str:
    """Every score matrix in long form: ``score, after_task, task, value`` (``after_task`` is
    ``zero_shot`` for the row before training; empty value: not evaluated)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["score", "after_task", "task", "value"])
    tasks = results["tasks"]
    for name, matrix in results["scores"].items():
        zero = results["zero_shot_scores"].get(name)
        rows = ([("zero_shot", zero)] if zero is not None else []) + list(zip(tasks, matrix,
                                                                               strict=True))
        for after, row in rows:
            for task, value in zip(tasks, row, strict=True):
                w.writerow([name, after, task, "" if value is None else value])
    return buf.getvalue()


def load_results(run_dir: str | Path, *, allow_modified: bool = False) -> dict[str, Any]:
    """Read and verify ``RUN_DIR/results.json``.

    Parameters
    ----------
    run_dir : path
    allow_modified : bool
        Return a file whose checksum does not match (with a warning and
        ``"integrity": "modified"``) instead of refusing it.

    Raises
    ------
    FileNotFoundError
        No ``results.json`` there.
    IntegrityError
        The contents do not match their checksum (a ``ValueError``).
    ValueError
        Not valid JSON, or not a results document (the missing or malformed key is named).
    """
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist; is {str(run_dir)!r} a run directory?")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not valid JSON: {err}.") from err
    if not isinstance(results, dict):
        raise ValueError(  # noqa: TRY004 - a damaged file, not a caller's type mistake
            f"{str(path)!r} holds a {type(results).__name__}, not a results object.")
    verdict = verify(results)
    if verdict == "missing" and results.get("format", 1) != 1:
        verdict = "mismatch"  # the digest key itself was damaged
    if verdict == "mismatch":
        msg = (f"{str(path)!r} does not match its sha256 checksum: it was changed after the run "
               "wrote it (a damaged disk or an edit), so its numbers cannot be trusted")
        if not allow_modified:
            raise IntegrityError(f"{msg}. Resume the run (cl run --resume) to rewrite it from its "
                                 "checkpoints, or pass --allow-modified to use it anyway.")
        warnings.warn(msg + "; using it anyway (--allow-modified).", RuntimeWarning, stacklevel=2)
    elif verdict == "missing":
        warnings.warn(f"{str(path)!r} has no checksum (written by an older version of cl); its "
                      "contents cannot be verified.", RuntimeWarning, stacklevel=2)
    results.pop(DIGEST_FIELD, None)
    check_results(results, str(path))
    if verdict == "mismatch":
        results["integrity"] = "modified"
    return results


def _is_score(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and 0.0 <= value <= 1.0)


def check_results(results: dict[str, Any], where: str = RESULTS_FILE) -> None:
    """Raise ``ValueError`` naming the first key of ``results`` that breaks the schema.

    Checked: the identifying keys exist; ``tasks`` is a non-empty list of names;
    ``accuracy_matrix`` is T×T and ``zero_shot`` null or of length T, with entries
    in [0, 1] or null; ``metrics`` maps names to numbers or null; ``compute``
    holds one record per task.
    """
    def bad(problem: str) -> ValueError:
        return ValueError(f"{where}: {problem}; the file is damaged or was edited, not written by "
                          "a run. Resume the run (cl run --resume) to rewrite it.")

    missing = [k for k in ("stream", "strategy", "backbone", "seed", "scenario", "status", "tasks",
                           "accuracy_matrix", "zero_shot", "metrics", "compute") if k not in results]
    if missing:
        raise ValueError(f"{where!r} is not a cl run result: it lacks {', '.join(missing)}.")
    tasks = results["tasks"]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise bad(f"'tasks' must be a non-empty list of task names, got {tasks!r:.80}")
    T = len(tasks)
    matrix = results["accuracy_matrix"]
    if not isinstance(matrix, list) or len(matrix) != T:
        rows = len(matrix) if isinstance(matrix, list) else type(matrix).__name__
        raise bad(f"'accuracy_matrix' has {rows} rows, expected {T} (one per task)")
    for t, row in enumerate(matrix):
        if not isinstance(row, list) or len(row) != T:
            cols = len(row) if isinstance(row, list) else type(row).__name__
            raise bad(f"'accuracy_matrix' row {t} has {cols} entries, expected {T}")
        wrong = [v for v in row if not _is_score(v)]
        if wrong:
            raise bad(f"'accuracy_matrix' row {t} holds {wrong[0]!r}, not an accuracy in [0, 1] or null")
    zero = results["zero_shot"]
    if zero is not None and (not isinstance(zero, list) or len(zero) != T
                             or not all(_is_score(v) for v in zero)):
        raise bad(f"'zero_shot' must be null or {T} accuracies in [0, 1], got {zero!r:.80}")
    metrics = results["metrics"]
    if not isinstance(metrics, dict) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
            for v in metrics.values()):
        raise bad(f"'metrics' must map metric names to numbers or null, got {metrics!r:.80}")
    compute = results["compute"]
    if not isinstance(compute, list) or len(compute) != T or not all(isinstance(c, dict)
                                                                      for c in compute):
        raise bad(f"'compute' must hold one record per task ({T}), got {compute!r:.80}")
    if "scores" in results:
        _check_scores(results, T, bad)


def _check_scores(results: dict[str, Any], T: int, bad: Callable[[str], ValueError]) -> None:
    """The keys of a run with several scores: ``score`` names one of ``scores``, each a T×T
    matrix of values in [0, 1] or null, with a ``zero_shot_scores`` and ``score_metrics`` entry."""
    scores, zero = results["scores"], results.get("zero_shot_scores")
    if not isinstance(scores, dict) or results.get("score") not in scores:
        raise bad(f"'score' {results.get('score')!r} must name one of 'scores'")
    if not isinstance(zero, dict) or set(zero) != set(scores):
        raise bad("'zero_shot_scores' must hold one entry per score of 'scores'")
    for name, matrix in scores.items():
        if not (isinstance(matrix, list) and len(matrix) == T and all(
                isinstance(row, list) and len(row) == T and all(_is_score(v) for v in row)
                for row in matrix)):
            raise bad(f"'scores'[{name!r}] must be a {T}×{T} matrix of scores in [0, 1] or null")
        z = zero[name]
        if z is not None and (not isinstance(z, list) or len(z) != T
                              or not all(_is_score(v) for v in z)):
            raise bad(f"'zero_shot_scores'[{name!r}] must be null or {T} scores in [0, 1]")
    summaries = results.get("score_metrics")
    if not isinstance(summaries, dict) or set(summaries) != set(scores) or not all(
            isinstance(m, dict) and all(v is None or (isinstance(v, (int, float))
                                                      and not isinstance(v, bool))
                                        for v in m.values()) for m in summaries.values()):
        raise bad("'score_metrics' must map every score to its metrics (numbers or null)")
