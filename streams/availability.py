"""Which tasks of a stream have their data on disk, and where the rest is expected.

Streams over external data (NEVIS'22, MTIL, X-TAIL, split-CIFAR, folders) put
on each task's ``metadata``:

``"expected_path"``
    where the task's data is expected (a directory), for messages;
``"data_check"``
    a zero-argument callable returning a :class:`TaskAvailability`-compatible
    ``(available, found_at, detail)`` tuple; it only looks at the file system.

and on the stream's ``metadata`` ``"data_hint"`` (:data:`DATA_HINT`): where the
data can be downloaded, and the ``stream.download`` option where the stream has one.

Tasks without a ``"data_check"`` (in-memory streams such as ``split-digits``,
``synthetic-nevis`` or user datasets) are always available. Missing data is
never dropped silently: :func:`require_data` fails listing the missing tasks,
and :func:`drop_missing` returns the available sub-stream *and* the skipped
names for the caller to record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from streams.core import Stream

DataCheck = Callable[[], tuple[bool, str | None, str]]
#: Stream metadata key: one line saying where the stream's data comes from and how to fetch it
#: (``--set stream.download=true`` where the stream has that option), added to missing-data errors.
DATA_HINT = "data_hint"


@dataclass(frozen=True)
class TaskAvailability:
    """Data availability of one task.

    Attributes
    ----------
    task : str
        Task name.
    position : int
        Index of the task in its stream.
    available : bool
    expected : str
        Where the data is expected (directory or source description).
    found_at : str or None
        Where it was found, when available.
    detail : str
        One line on how the task resolves its data (or what is missing).
    """

    task: str
    position: int
    available: bool
    expected: str
    found_at: str | None
    detail: str


def check_data(stream: Stream) -> list[TaskAvailability]:
    """Availability of every task of ``stream``, in stream order (file-system checks only)."""
    out = []
    for i, task in enumerate(stream):
        check = task.metadata.get("data_check")
        expected = str(task.metadata.get("expected_path", "(in memory)"))
        if check is None:
            out.append(TaskAvailability(task.name, i, True, expected, expected, "in memory"))
            continue
        available, found_at, detail = check()
        out.append(TaskAvailability(task.name, i, bool(available), expected, found_at, detail))
    return out


def missing_tasks(stream: Stream) -> list[TaskAvailability]:
    """The unavailable tasks of ``stream``."""
    return [a for a in check_data(stream) if not a.available]


def format_missing(missing: list[TaskAvailability], limit: int = 20) -> str:
    """Human-readable list of missing tasks with their expected locations."""
    lines = [f"  - {a.task}: expected at {a.expected} ({a.detail})" for a in missing[:limit]]
    if len(missing) > limit:
        lines.append(f"  ... and {len(missing) - limit} more")
    return "\n".join(lines)


def require_data(stream: Stream) -> None:
    """Raise ``FileNotFoundError`` listing every task of ``stream`` whose data is missing."""
    missing = missing_tasks(stream)
    if missing:
        hint = stream.metadata.get(DATA_HINT)
        raise FileNotFoundError(
            f"{len(missing)} of {len(stream)} tasks of stream {stream.name!r} have no data:\n"
            f"{format_missing(missing)}\n" + (f"{hint}\n" if hint else "")
            + "Prepare them (see `cl streams check`), or pass --skip-missing to run the others "
            "(the skipped tasks are recorded in results.json)."
        )


def drop_missing(stream: Stream) -> tuple[Stream, list[str]]:
    """The sub-stream of available tasks and the names of the skipped ones.

    The returned stream keeps the order, name and scenario, and records the
    skipped names in ``metadata["skipped_tasks"]``.

    Raises
    ------
    FileNotFoundError
        No task of ``stream`` has data.
    """
    report = check_data(stream)
    skipped = [a.task for a in report if not a.available]
    if not skipped:
        return stream, []
    kept = tuple(stream[a.position] for a in report if a.available)
    if not kept:
        raise FileNotFoundError(
            f"no task of stream {stream.name!r} has data:\n"
            f"{format_missing([a for a in report if not a.available])}"
        )
    meta = dict(stream.metadata) | {"skipped_tasks": skipped}
    return Stream(stream.name, kept, stream.scenario, meta), skipped
