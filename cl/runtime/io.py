"""Atomic, link-refusing file writes: a crash never leaves a half-written file under its final
name, and no write inside a run, sweep or cache directory follows a link out of it.

A file is written to a temporary sibling ``.<name>.<random>.tmp``, flushed,
fsynced and renamed over ``<name>``. The temporary file is created with mode
``0o666`` filtered by the process umask, as :func:`open` would create the final
file, so a cache shared by a group stays readable by the group. A process
killed mid-write leaves its temporary file behind; :func:`remove_temporaries`
deletes them (the run directory's owner does it on resume, under its lock).

Links. Every writer names the directory it owns, ``root`` (the run directory, the
sweep directory, the feature cache; by default the file's own directory). ``root``
itself may be reached through symbolic links: where a user puts a run is the user's
choice. Below it, each directory is opened with ``O_NOFOLLOW`` relative to its parent
(``openat``), the file is created with ``O_NOFOLLOW | O_EXCL`` and renamed relative to
that directory, so a symbolic link planted *inside* ``root`` (``RUN_DIR/.lock``,
``RUN_DIR/checkpoints``, ``RUN_DIR/results.json``, a figure) is never followed: the write
is refused with :class:`~cl.errors.LinkRefused`, naming the link and where it points.
Files opened in place (the lock, appended logs) must also not be hard links (a second
name of some other file), since writing them would change that file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from cl.errors import LinkRefused, PathRefused

TEMP_SUFFIX = ".tmp"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _refused(link: Path, root: Path) -> LinkRefused:
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    return LinkRefused(
        f"refusing to write through {str(link)!r}: it is a symbolic link (to {target!r}) inside "
        f"{str(root)!r}, and cl never follows a link planted in a run, sweep or cache directory "
        f"(the directory itself may be a link). Remove the link (rm {str(link)!r}) and run again."
    )


def refuse_link(path: str | os.PathLike[str], *, root: str | os.PathLike[str]) -> None:
    """Raise :class:`~cl.errors.LinkRefused` when ``path`` (inside ``root``) is a symbolic link,
    for files the library reads back as its own state (checkpoints)."""
    if os.path.islink(path):
        raise _refused(Path(path), Path(root))


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a file"), (stat.S_ISFIFO, "a named pipe"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def _check_kind(name: str, dir_fd: int, path: Path, root: Path, *, directory: bool) -> None:
    """Refuse a link at ``name`` (:class:`~cl.errors.LinkRefused`) or something other than the
    regular file (``directory``: the directory) cl would write there (``PathRefused``)."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise _refused(path, root)
    if (stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)):
        return
    found = next((what for test, what in _KINDS if test(mode)), "something else")
    raise PathRefused(
        f"cannot write {str(path)!r}: {found} of that name is in the way, where cl writes "
        f"{'a directory' if directory else 'a file'}; move it away and run again."
    )


def _parts(path: Path, root: Path) -> tuple[str, ...]:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise ValueError(f"{str(path)!r} is not inside {str(root)!r}") from None
    if ".." in parts:
        raise ValueError(f"{str(path)!r} leaves {str(root)!r} through '..'")
    return parts


@contextlib.contextmanager
def open_directory(directory: str | os.PathLike[str], *,
                   root: str | os.PathLike[str] | None = None) -> Iterator[int]:
    """A file descriptor of ``directory``, created if missing, reached from ``root`` without
    following any link below ``root`` (``root`` itself may be a link; it is created too).

    Raises
    ------
    LinkRefused
        A directory between ``root`` and ``directory`` (included) is a symbolic link.
    """
    directory = Path(directory)
    base = directory if root is None else Path(root)
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        here = base
        for part in _parts(directory, base):
            here = here / part
            try:
                os.mkdir(part, 0o777, dir_fd=fd)
            except FileExistsError:
                _check_kind(part, fd, here, base, directory=True)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    _check_kind(part, fd, here, base, directory=True)  # replaced meanwhile
                raise
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def ensure_directory(directory: str | os.PathLike[str], *,
                     root: str | os.PathLike[str] | None = None) -> Path:
    """Create ``directory`` under ``root`` without following links below ``root``; return it
    (for writers that take a directory path, such as TensorBoard's)."""
    with open_directory(directory, root=root):
        return Path(directory)


def open_in_place(path: str | os.PathLike[str], flags: int, *,
                  root: str | os.PathLike[str] | None = None) -> int:
    """``os.open(path, flags | O_CREAT | O_NOFOLLOW, 0o666)`` for a file written in place (a
    lock, an appended log): refused when it is a symbolic or a hard link.

    Raises
    ------
    LinkRefused
        ``path`` or a directory below ``root`` is a symbolic link, or ``path`` has other names
        (hard links), so writing it would change another file.
    """
    target = Path(path)
    owner = Path(root) if root is not None else target.parent
    with open_directory(target.parent, root=root) as dir_fd:
        _check_kind(target.name, dir_fd, target, owner, directory=False)
        try:  # O_NONBLOCK: a named pipe put there meanwhile must not block the open
            fd = os.open(target.name, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | getattr(os, "O_CLOEXEC", 0), 0o666, dir_fd=dir_fd)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                _check_kind(target.name, dir_fd, target, owner, directory=False)
            raise
    os.set_blocking(fd, True)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        what = "has other names (hard links), so writing it would change another file" \
            if stat.S_ISREG(info.st_mode) else "is not a regular file"
        raise LinkRefused(
            f"refusing to write {str(target)!r}: it {what}; cl writes only its own files in a "
            f"run, sweep or cache directory. Remove it (rm {str(target)!r}) and run again."
        )
    return fd


def open_append(path: str | os.PathLike[str], *,
                root: str | os.PathLike[str] | None = None) -> IO[bytes]:
    """A log file opened for appending (binary), created if missing, never through a link."""
    return os.fdopen(open_in_place(path, os.O_WRONLY | os.O_APPEND, root=root), "ab")


def _temporary(target: str, dir_fd: int) -> tuple[int, str]:
    """Create and open a fresh temporary sibling of ``target`` (mode 0o666 & ~umask)."""
    while True:
        tmp = f".{target}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            return os.open(tmp, flags, 0o666, dir_fd=dir_fd), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None], *,
                 root: str | os.PathLike[str] | None = None) -> None:
    """Write ``path`` through ``write(fileobj)`` into a temporary sibling, fsync, then rename.

    A crash (or a full disk, or a permission error) leaves the previous file intact.

    Parameters
    ----------
    path : path
    write : callable
        Writes the contents into the binary file object it is given.
    root : path or None
        The directory the writer owns (run, sweep or cache directory); default: the file's
        directory. No link below it, and no link at ``path``, is followed.

    Raises
    ------
    LinkRefused
        ``path`` or a directory between ``root`` and it is a symbolic link (named).
    PathRefused
        A directory (or pipe, socket, device) of that name is in the way (named).
    """
    target = Path(path)
    with open_directory(target.parent, root=root) as dir_fd:
        _check_kind(target.name, dir_fd, target,
                    Path(root) if root is not None else target.parent, directory=False)
        fd, tmp = _temporary(target.name, dir_fd)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise


def atomic_write_text(path: str | os.PathLike[str], text: str, *,
                      root: str | os.PathLike[str] | None = None) -> None:
    """Atomically write UTF-8 text (see :func:`atomic_write` for ``root``)."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), root=root)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, compact: bool = False,
                      root: str | os.PathLike[str] | None = None) -> None:
    """Atomically write ``obj`` as JSON, indented unless ``compact`` (NaN is not allowed: use null)."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False) if compact else \
        json.dumps(obj, indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n", root=root)


def save_figure(fig: Any, path: str | os.PathLike[str], *,
                root: str | os.PathLike[str] | None = None, **savefig: Any) -> Path:
    """Render a matplotlib figure in memory (format from the suffix) and write it atomically."""
    import io

    target = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=target.suffix.lower().lstrip(".") or "png", **savefig)
    atomic_write(target, lambda fh: fh.write(buf.getvalue()), root=root)
    return target


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
