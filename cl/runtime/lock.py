"""One owner per run directory: an exclusive advisory lock held for the whole run.

:class:`RunLock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``RUN_DIR/.lock``
and writes the holder's pid, host, start time and command line into it. A
second process asking for the same directory fails at once with
:class:`~cl.errors.RunDirectoryInUse` naming the holder. The kernel releases a
``flock`` when its holder exits, however it exits (SIGKILL included), so the
lock of a dead process never blocks: the file's stale contents are simply
overwritten by the next owner. Within one process the lock is re-entrant (the
experiment builder holds it while it creates loggers, the runner while it
runs). The lock is advisory (it stops other ``cl`` processes, not a user's
``rm``) and, like every ``flock``, is only as reliable as the file system's
support for it (local disks: yes; some network file systems: no). The lock file is
opened with ``O_NOFOLLOW`` and must not be a hard link (:func:`cl.runtime.io.open_in_place`):
a ``.lock`` planted as a link to another file is refused, never written.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from cl.errors import PathRefused, RunDirectoryInUse
from cl.runtime.io import open_in_place

LOCK_FILE = ".lock"
#: Locks this process holds: resolved lock file -> [file descriptor, depth, pid] (a forked
#: child inherits the dict, not the ownership: it checks the pid).
_HELD: dict[Path, list[int]] = {}


class RunLock:
    """Exclusive lock on a run directory, as a context manager.

    Parameters
    ----------
    run_dir : path
        Created (with its parents) if missing.

    Raises
    ------
    RunDirectoryInUse
        Another live process holds the lock (its pid, host and command are named).
    PermissionError
        The directory cannot be created or the lock file not opened.
    LinkRefused
        ``RUN_DIR/.lock`` is a symbolic or hard link (named in the message).
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._key: Path | None = None

    def acquire(self) -> RunLock:
        """Take the lock (non-blocking) and write this process's identity into the lock file."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            key = self.run_dir.resolve() / LOCK_FILE
            if key in _HELD and _HELD[key][2] == os.getpid():  # this process holds it already
                _HELD[key][1] += 1
                self._key = key
                return self
            fd = open_in_place(self.path, os.O_RDWR, root=self.run_dir)
        except PathRefused:
            raise
        except OSError as err:
            raise PermissionError(
                f"output directory {str(self.run_dir)!r} is not writable ({err.strerror}); "
                "choose another with --out."
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirectoryInUse(
                f"run directory {str(self.run_dir)!r} is in use by {holder}; two runs in one "
                "directory would mix their checkpoints. Wait for it to finish, or choose another "
                "--out."
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        _HELD[key] = [fd, 1, os.getpid()]
        self._key = key
        return self

    def release(self) -> None:
        """Release the lock (the lock file stays; its contents are stale from now on)."""
        if self._key is None:
            return
        held = _HELD[self._key]
        held[1] -= 1
        if held[1] == 0:
            fcntl.flock(held[0], fcntl.LOCK_UN)
            os.close(held[0])
            del _HELD[self._key]
        self._key = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._key is not None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """``"process 123 on host h (started ..., command: cl run ...)"`` from a held lock file."""
    try:
        info = json.loads(os.pread(fd, 65536, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process (it has not written its identity yet)"
    command = " ".join(str(a) for a in info.get("command") or [])
    return (f"process {info['pid']} on host {info.get('host', '?')} (started "
            f"{info.get('started', '?')}" + (f", command: {command}" if command else "") + ")")
