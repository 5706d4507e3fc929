"""Optional experiment loggers: TensorBoard and Weights & Biases.

The run directory (``results.json``, ``report.md``) is always written; these
loggers mirror the accuracy matrix and the metrics to a dashboard after each
task. The runner calls, for every finished task ``t``::

    logger.log_row(t, tracker)   # accuracies after training task t, metrics so far
    logger.close()               # once, at the end (also after a failure)

Logged values (step = number of tasks trained, ``t + 1``; the zero-shot row,
when evaluated, at step 0):

- ``accuracy/<task>``: ``A[t, j]`` for every task j, in percent;
- ``accuracy/seen_mean``: mean of ``A[t, j]`` over the tasks seen, ``j <= t``
  (an image-text run logs its primary score, ``mean_recall/<task>``...);
- ``metrics/<name>``: :meth:`cl.core.tracker.Tracker.summary` (the metrics of
  :mod:`cl.core.metrics` on the rows finished so far), in percent; undefined (NaN)
  metrics, e.g. forgetting after the first task, are left out;
- ``compute/<counter>``: task t's compute counters (seconds, examples, FLOPs,
  memory bytes) as recorded by the runner.

Each logger needs its package (``tensorboard``; ``wandb``) and says so when
it is missing. W&B runs offline unless ``WANDB_MODE`` says otherwise or an API
key is configured (``WANDB_API_KEY``), so a run never needs the network.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cl.core.tracker import Tracker
from cl.errors import OptionError
from cl.runtime.io import ensure_directory

__all__ = ["LOGGERS", "Logger", "TensorBoardLogger", "WandbLogger", "make_loggers", "row_scalars"]


class Logger(Protocol):
    """What the runner needs from a logger."""

    def log_row(self, t: int, tracker: Tracker) -> None: ...

    def close(self) -> None: ...


def _tag(name: str) -> str:
    """A task name as a dashboard tag component (no slashes or spaces)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "task"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def row_scalars(t: int, tracker: Tracker) -> dict[str, float]:
    """The scalars logged after training task ``t`` (accuracies and metrics in percent).

    Parameters
    ----------
    t : int
        Index of the task just trained (0-based).
    tracker : Tracker
        Holds the accuracy matrix (T, T); row ``t`` must be evaluated.

    Returns
    -------
    dict
        Tag → value; NaN entries (not evaluated, undefined metric) are left out.
    """
    if not 0 <= t < tracker.n_tasks:
        raise ValueError(f"task index {t} is out of range for a stream of {tracker.n_tasks} tasks.")
    row, score = tracker.matrix[t], tracker.score  # the primary score (accuracy by default)
    scalars: dict[str, float] = {}
    for name, acc in zip(tracker.task_names, row, strict=True):
        if _finite(float(acc)):
            scalars[f"{score}/{_tag(name)}"] = 100.0 * float(acc)
    seen = [float(a) for a in row[: t + 1] if _finite(float(a))]
    if seen:
        scalars[f"{score}/seen_mean"] = 100.0 * sum(seen) / len(seen)
    for key, value in tracker.summary().items():
        if _finite(value):
            scalars[f"metrics/{key}"] = 100.0 * float(value)
    for key, value in tracker.compute[t].items():
        if _finite(value):
            scalars[f"compute/{key}"] = float(value)
    return scalars


def zero_shot_scalars(tracker: Tracker) -> dict[str, float]:
    """``accuracy/<task>`` of the zero-shot row (percent); empty when it was not evaluated."""
    return {f"{tracker.score}/{_tag(name)}": 100.0 * float(z)
            for name, z in zip(tracker.task_names, tracker.zero_shot, strict=True) if _finite(float(z))}


class TensorBoardLogger:
    """Scalars to TensorBoard event files under ``log_dir``.

    Parameters
    ----------
    log_dir : path
        Directory of the event files (``RUN_DIR/tensorboard``).
    config : dict
        The resolved run config, stored once as text (``config`` tag).
    """

    def __init__(self, log_dir: str | os.PathLike[str], config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = ensure_directory(log_dir, root=Path(log_dir).parent)  # no planted link
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```")
        self._zero_shot_logged = False

    def log_row(self, t: int, tracker: Tracker) -> None:
        """Write row ``t`` (step ``t + 1``), and the zero-shot row at step 0 the first time."""
        if not self._zero_shot_logged:
            for tag, value in zero_shot_scalars(tracker).items():
                self.writer.add_scalar(tag, value, global_step=0)
            self._zero_shot_logged = True
        for tag, value in row_scalars(t, tracker).items():
            self.writer.add_scalar(tag, value, global_step=t + 1)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def wandb_mode() -> str:
    """``$WANDB_MODE`` when set, else ``"online"`` with an API key and ``"offline"`` without."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class WandbLogger:
    """Scalars to a Weights & Biases run (offline unless configured, see :func:`wandb_mode`).

    Parameters
    ----------
    out_dir : path
        The run directory; W&B writes its files under ``out_dir/wandb``.
    config : dict
        The resolved run config, stored as the W&B run config.
    project : str or None
        W&B project (default ``$WANDB_PROJECT`` or ``"cl"``).
    """

    def __init__(self, out_dir: str | os.PathLike[str], config: dict[str, Any],
                 project: str | None = None) -> None:
        import wandb

        self.out_dir = Path(out_dir)
        ensure_directory(self.out_dir / "wandb", root=self.out_dir)  # no planted link
        self.run = wandb.init(
            project=project or os.environ.get("WANDB_PROJECT", "cl"),
            name=self.out_dir.name, dir=str(self.out_dir), config=config, mode=wandb_mode(),
            reinit="create_new", settings=wandb.Settings(console="off", quiet=True),
        )
        self._zero_shot_logged = False

    def log_row(self, t: int, tracker: Tracker) -> None:
        """Log row ``t`` at step ``t + 1`` (the zero-shot row at step 0 the first time)."""
        if not self._zero_shot_logged:
            zs = zero_shot_scalars(tracker)
            if zs:
                self.run.log(zs, step=0)
            self._zero_shot_logged = True
        self.run.log(row_scalars(t, tracker), step=t + 1)

    def close(self) -> None:
        """Finish the run. The W&B service completes the run file in the background
        (at the latest when the process exits, or on ``wandb.teardown()``)."""
        self.run.finish()


#: logger name -> (package it needs, pip name, factory(out_dir, config))
LOGGERS: dict[str, tuple[str, str, Callable[[Path, dict[str, Any]], Logger]]] = {
    "tensorboard": ("tensorboard", "tensorboard",
                    lambda out, config: TensorBoardLogger(out / "tensorboard", config)),
    "wandb": ("wandb", "wandb", lambda out, config: WandbLogger(out, config)),
}


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def make_loggers(names: list[str], out_dir: str | os.PathLike[str], config: dict[str, Any]) -> list[Logger]:
    """Build the loggers ``names`` (``"tensorboard"``, ``"wandb"``) for a run in ``out_dir``.

    Parameters
    ----------
    names : list of str
        Logger names; case and surrounding spaces are ignored, duplicates kept once.
    out_dir : path
        The run directory.
    config : dict
        The resolved run config (logged as text / run config).

    Returns
    -------
    list
        Objects with ``log_row(t, tracker)`` and ``close()``.

    Raises
    ------
    ValueError
        An unknown logger name (the valid ones are listed), or a logger whose
        package is not installed (the ``pip install`` to run is given).
    """
    if isinstance(names, str):
        raise OptionError(f"make_loggers expects a list of logger names, got the string {names!r}.")
    wanted: list[str] = []
    for raw in names:
        if not isinstance(raw, str):
            raise OptionError(f"logger names must be strings, got {raw!r}.")
        name = raw.strip().lower()
        if name not in LOGGERS:
            raise ValueError(f"unknown logger {raw!r}; valid loggers: {', '.join(sorted(LOGGERS))}.")
        if name not in wanted:
            wanted.append(name)
    for name in wanted:
        package, pip_name, _ = LOGGERS[name]
        if not _installed(package):
            raise ValueError(
                f"logger {name!r} needs the {package!r} package, which is not installed; "
                f"install it with `pip install {pip_name}` or leave {name!r} out of --log."
            )
    out = Path(out_dir)
    loggers: list[Logger] = []
    try:
        for name in wanted:
            loggers.append(LOGGERS[name][2](out, config))
    except BaseException:
        for lg in loggers:
            lg.close()
        raise
    return loggers
