"""Atomic file writes: a crash never leaves a half-written file under its final name.

A file is written to a temporary sibling ``.<name>.<random>.tmp``, flushed,
fsynced and renamed over ``<name>``. The temporary file is created with mode
``0o666`` filtered by the process umask, as :func:`open` would create the final
file, so a cache shared by a group stays readable by the group. A process
killed mid-write leaves its temporary file behind; :func:`remove_temporaries`
deletes them (the run directory's owner does it on resume, under its lock).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"


def _temporary(target: Path) -> tuple[int, Path]:
    """Create and open a fresh temporary sibling of ``target`` (mode 0o666 & ~umask)."""
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(fileobj)`` into a temporary sibling, fsync, then rename.

    A crash (or a full disk, or a permission error) leaves the previous file intact.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, compact: bool = False) -> None:
    """Atomically write ``obj`` as JSON, indented unless ``compact`` (NaN is not allowed: use null)."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False) if compact else \
        json.dumps(obj, indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")


def remove_temporaries(directory: str | os.PathLike[str], *, older_than: float = 0.0) -> list[Path]:
    """Delete the temporary files :func:`atomic_write` left in ``directory`` (not recursive).

    Parameters
    ----------
    directory : path
    older_than : float
        Only files last modified more than this many seconds ago (a shared
        directory, such as the feature cache, may hold another process's
        write in progress; a run directory under its lock holds none).

    Returns
    -------
    list of Path
        The files removed.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    now, removed = time.time(), []
    for tmp in folder.glob(f".*{TEMP_SUFFIX}"):
        try:
            if tmp.is_file() and now - tmp.stat().st_mtime >= older_than:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # another process removed or renamed it meanwhile
            continue
    return removed
