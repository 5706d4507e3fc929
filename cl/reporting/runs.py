"""Run directories as rows: what ``cl compare`` reads from each ``results.json``.

A :class:`RunSummary` holds what was run (stream, strategy, backbone, seed,
scenario, config), its metrics (definitions in :mod:`cl.core.metrics`) and its
compute: training seconds and FLOPs summed over tasks (every hyper-parameter
trial included) and the memory the strategy carries after its last finished
task. A directory holding run directories (a sweep, ``cl run --seeds``) stands
for all of them.

:func:`load_compared` also says which runs are finished: a run is aggregated only
when its state, read by :func:`cl.sweep.index.run_state` (the source of ``cl sweep
--status``), is ``completed`` and it finished every task of its stream; any other
run is an :class:`Unfinished` one, listed with its state, never averaged.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cl.core.metrics import defined_metrics
from cl.core.results import RESULTS_FILE, load_results
from cl.reporting.aggregate import Group, format_value
from cl.reporting.identity import code_fingerprint
from cl.sweep.index import INDEX_FILE, JOB_FILE, read_index, run_state

#: metric key -> short column header (percent points)
METRIC_HEADERS: dict[str, str] = {
    "average_accuracy": "avg acc",
    "average_incremental_accuracy": "avg inc acc",
    "forgetting": "forgetting",
    "forgetting_after_training": "forgetting (after training)",
    "backward_transfer": "BWT",
    "forward_transfer": "FWT",
    "mtil_transfer": "MTIL Transfer",
    "mtil_average": "MTIL Average",
    "mtil_last": "MTIL Last",
    "nevis_average_error": "NEVIS avg error",
}
#: image-text runs: the columns of CTP's tables (final R@1 both ways, mean recall, mAP@1, and
#: BWT on mean recall and on mAP@1), as ``score/metric`` keys of :attr:`RunSummary.metrics`
SCORE_COLUMNS: tuple[str, ...] = (
    "i2t_recall@1/average_accuracy", "t2i_recall@1/average_accuracy",
    "mean_recall/average_accuracy", "mean_recall/backward_transfer",
    "map@1/average_accuracy", "map@1/backward_transfer")
PLOT_FORMATS: tuple[str, ...] = (".png", ".pdf", ".svg")
_REQUIRED_KEYS = ("stream", "strategy", "backbone", "seed", "tasks", "completed_tasks", "metrics",
                  "compute")


@dataclass
class RunSummary:
    """One run, reduced to a table row.

    Attributes
    ----------
    label : str
        Short name of the run (its directory name, made unique).
    path : Path
    stream, strategy, backbone, status : str
    seed : int
    completed, n_tasks : int
        Tasks finished, tasks in the stream.
    metrics : dict of str to float or None
        Fractions in [0, 1] (``None``: undefined or missing): the metrics of the
        primary score, and for a run with several scores each score's as
        ``"<score>/<metric>"`` (``"mean_recall/backward_transfer"``).
    train_seconds, train_flops : float or None
        Summed over tasks (``None``: no task recorded it).
    memory_bytes : float or None
        What the strategy carries after the last finished task.
    scenario : str or None
    config : dict or None
        The run's resolved config (None for runs started from Python without one).
    score : str
        The primary score (``"accuracy"``, or a retrieval score for image-text runs).
    extract_seconds : float or None
        Feature extraction seconds summed over tasks (compute key ``extract_seconds``).
    code : dict
        Code fingerprint (:func:`cl.reporting.identity.code_fingerprint`).
    backbone_fingerprint, image_transform : str or None
        The weights actually loaded and the image transform (protocol).
    class_order : list of int or None
        The class order the stream used, when it records one.
    matrix : list of list or None
        The score matrix (rows: after training task t), as ``results.json`` holds it.
    skipped_tasks : list of str
        Tasks left out for lack of data (``--skip-missing``).
    """

    label: str
    path: Path
    stream: str
    strategy: str
    backbone: str
    seed: int
    status: str
    completed: int
    n_tasks: int
    metrics: dict[str, float | None] = field(default_factory=dict)
    train_seconds: float | None = None
    train_flops: float | None = None
    memory_bytes: float | None = None
    scenario: str | None = None
    config: dict[str, Any] | None = None
    score: str = "accuracy"
    extract_seconds: float | None = None
    code: dict[str, Any] = field(default_factory=dict)
    backbone_fingerprint: str | None = None
    image_transform: str | None = None
    class_order: list[int] | None = None
    matrix: list[Any] | None = None
    skipped_tasks: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Whether the run completed every task of its stream."""
        return self.status == "completed" and self.completed == self.n_tasks


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _total(compute: list[dict[str, Any]], key: str) -> float | None:
    values = [v for c in compute if (v := _number(c.get(key))) is not None]
    return float(sum(values)) if values else None


def summarize_run(results: dict[str, Any], path: str | os.PathLike[str], label: str | None = None) -> RunSummary:
    """Reduce one ``results.json`` dict to a :class:`RunSummary`.

    Raises
    ------
    ValueError
        When ``results`` lacks a key every run directory has (not a ``cl run`` result).
    """
    missing = [k for k in _REQUIRED_KEYS if k not in results]
    if missing:
        raise ValueError(
            f"{str(Path(path) / 'results.json')!r} is not a cl run result: it lacks "
            f"{', '.join(missing)}."
        )
    compute = list(results["compute"])
    n_tasks = len(results["tasks"])
    completed = int(results["completed_tasks"])
    last = compute[completed - 1] if 0 < completed <= len(compute) else {}
    return RunSummary(
        label=label or Path(path).name,
        path=Path(path),
        stream=str(results["stream"]),
        strategy=str(results["strategy"]),
        backbone=str(results["backbone"]),
        seed=int(results["seed"]),
        status=str(results.get("status", "unknown")),
        completed=completed,
        n_tasks=n_tasks,
        metrics={**{k: _number(v) for k, v in results["metrics"].items()},
                 **{f"{score}/{k}": _number(v)
                    for score, values in (results.get("score_metrics") or {}).items()
                    for k, v in values.items()}},
        train_seconds=_total(compute[:completed], "train_seconds"),
        train_flops=_total(compute[:completed], "train_flops"),
        memory_bytes=_number(last.get("memory_bytes")),
        scenario=results.get("scenario"),
        config=results.get("config"),
        score=str(results.get("score", "accuracy")),
        extract_seconds=_total(compute[:completed], "extract_seconds"),
        code=code_fingerprint(results),
        backbone_fingerprint=results.get("backbone_fingerprint"),
        image_transform=results.get("image_transform"),
        class_order=results.get("class_order"),
        matrix=results.get("accuracy_matrix"),
        skipped_tasks=list(results.get("skipped_tasks") or []),
    )


def _labels(paths: Sequence[Path]) -> list[str]:
    """Directory names, or longer path tails where two directories' names collide (a directory
    reached twice keeps one label)."""
    distinct = list(dict.fromkeys(p.resolve() for p in paths))
    labels = [p.name or str(p) for p in distinct]
    depth = 1
    while len(set(labels)) < len(labels) and depth < 8:
        depth += 1
        labels = ["/".join(p.parts[-depth:]) for p in distinct]
    if len(set(labels)) < len(labels):
        labels = [str(p) for p in distinct]
    by_path = dict(zip(distinct, labels, strict=True))
    return [by_path[p.resolve()] for p in paths]


def _is_run_dir(directory: Path) -> bool:
    return (directory / RESULTS_FILE).is_file() or (directory / JOB_FILE).is_file()


def expand_run_dirs(directory: Path) -> list[Path]:
    """``directory`` itself when it is a run directory (``results.json``, or a sweep run's
    ``job.json``), else the run directories below it (a sweep, ``cl run --seeds``) and the
    runs a sweep index (``sweep.json``) lists, sorted; ``[directory]`` when there are none
    (so that loading it reports what is missing)."""
    if _is_run_dir(directory):
        return [directory]
    found = {p.parent for name in (RESULTS_FILE, JOB_FILE) for p in directory.rglob(name)}
    for index in directory.rglob(INDEX_FILE):
        sweep = read_index(index.parent) or {}
        found.update(index.parent / str(r["dir"]) for r in sweep.get("runs", []) if "dir" in r)
    return sorted(found) or [directory]


@dataclass(frozen=True)
class Unfinished:
    """A run that is not aggregated: its state as ``cl sweep --status`` reads it.

    Attributes
    ----------
    label : str
    path : Path
    status : str
        One of :data:`cl.sweep.index.STATES` (``"completed"`` for a run marked completed
        that did not finish every task).
    completed, n_tasks : int
    error : str or None
    run : RunSummary or None
        Its partial results, when it wrote any.
    """

    label: str
    path: Path
    status: str
    completed: int
    n_tasks: int
    error: str | None = None
    run: RunSummary | None = None


def _expand(run_dirs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    if not run_dirs:
        raise ValueError("cl compare needs at least one run directory.")
    paths: list[Path] = []
    for d in map(Path, run_dirs):
        if not d.is_dir():
            raise FileNotFoundError(f"{str(d)!r} is not a directory; pass run directories written by cl run.")
        paths.extend(expand_run_dirs(d))
    return paths


def load_compared(run_dirs: Sequence[str | os.PathLike[str]], *, allow_modified: bool = False
                  ) -> tuple[list[RunSummary], list[Unfinished]]:
    """The finished runs below ``run_dirs`` (in order, duplicates included) and the others.

    A run is finished when :func:`cl.sweep.index.run_state` says ``completed`` and it
    finished every task; a sweep run without ``results.json`` (pending, failed at start)
    is unfinished with its state. Errors as :func:`load_runs`.
    """
    paths = _expand(run_dirs)
    finished: list[RunSummary] = []
    unfinished: list[Unfinished] = []
    for path, label in zip(paths, _labels(paths), strict=True):
        listed = (path / JOB_FILE).is_file() or (path.parent / INDEX_FILE).is_file()
        run, error = None, None
        if (path / RESULTS_FILE).is_file() or not listed:  # else: a sweep run not started
            results = load_results(path, allow_modified=allow_modified)
            run, error = summarize_run(results, path, label), results.get("error")
        state = run_state(path)
        if run is not None and run.finished and state.status == "completed":
            finished.append(run)
            continue
        unfinished.append(Unfinished(
            label, path, state.status, run.completed if run else state.completed,
            run.n_tasks if run else state.n_tasks, state.error or error, run))
    return finished, unfinished


def load_runs(run_dirs: Sequence[str | os.PathLike[str]], *,
              allow_modified: bool = False) -> list[RunSummary]:
    """Read and summarize every run directory, in the order given (``allow_modified``: accept
    a ``results.json`` that fails its checksum, see :func:`cl.core.results.load_results`).

    A directory without ``results.json`` that holds run directories (a sweep
    directory, the parent of ``cl run --seeds`` runs) stands for all of them.

    Raises
    ------
    ValueError
        No run directory given.
    FileNotFoundError
        A directory without ``results.json`` (see :func:`cl.core.results.load_results`).
    """
    paths = [p for p in _expand(run_dirs) if (p / RESULTS_FILE).is_file()] or _expand(run_dirs)
    return [summarize_run(load_results(p, allow_modified=allow_modified), p, label)
            for p, label in zip(paths, _labels(paths), strict=True)]


def metric_keys(runs: Sequence[RunSummary], metrics: Sequence[str] | None) -> list[str]:
    """Metric keys to show: those some run has and its scenario defines (or ``metrics``)."""
    present: list[str] = []
    for run in runs:
        present.extend(k for k in run.metrics if k not in present)
    if metrics is not None:
        unknown = [m for m in metrics if m not in present]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; "
                             f"the runs have: {', '.join(present)}.")
        return list(metrics)
    defined = set()
    for run in runs:
        defined.update(k for k in run.metrics if _defined(run.scenario, k))
    if all(run.score == "accuracy" for run in runs):
        return [k for k in present if k in defined]
    plain = [k for k in present if k in defined and "/" not in k] \
        if any(run.score == "accuracy" for run in runs) else []
    return plain + [k for k in SCORE_COLUMNS if k in defined]


def _defined(scenario: str | None, key: str) -> bool:
    """Whether ``key`` (a metric, or ``score/metric``) is defined for ``scenario``."""
    return bool(defined_metrics(scenario, [key.rpartition("/")[2]]))


def metric_header(key: str) -> str:
    """Column header of a metric key: ``"BWT"``, ``"mean_recall BWT"``, ``"map@1 final"``."""
    score, _, metric = key.rpartition("/")
    if not score:
        return METRIC_HEADERS.get(key, key)
    return f"{score} " + ("final" if metric == "average_accuracy" else METRIC_HEADERS.get(metric, metric))


def format_bytes(n: float | None) -> str:
    """``1536 -> "1.5 KiB"``; ``None -> "—"``."""
    if n is None:
        return "—"
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while abs(n) >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


def defined_value(run: RunSummary, key: str) -> float | None:
    """The run's metric, None where its scenario leaves it undefined."""
    return run.metrics.get(key) if _defined(run.scenario, key) else None


def options_text(group: Group) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in group.options().items()) or "—"


__all__ = [
    "METRIC_HEADERS",
    "PLOT_FORMATS",
    "SCORE_COLUMNS",
    "RunSummary",
    "Unfinished",
    "defined_value",
    "expand_run_dirs",
    "format_bytes",
    "load_compared",
    "load_runs",
    "metric_header",
    "metric_keys",
    "options_text",
    "summarize_run",
]
