"""One owner per run directory: a second process is refused with the holder named; a killed
holder's lock never blocks."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cl.cli import main
from cl.errors import RunDirectoryInUse
from cl.runtime.lock import LOCK_FILE, RunLock


@contextmanager
def held_by_child(run_dir: Path) -> Iterator[int]:
    """A forked child process holding ``run_dir``'s lock until the block ends (SIGKILL)."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            RunLock(run_dir).acquire()
            os.write(ready_w, b"1")
            signal.pause()
        finally:
            os._exit(0)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"1"
    os.close(ready_r)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_second_owner_is_refused_naming_the_holder(tmp_path):
    with held_by_child(tmp_path / "run") as pid, pytest.raises(
            RunDirectoryInUse, match=rf"is in use by process {pid} on host .*command: .*another --out"):
        RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run") as lock:  # the holder was SIGKILLed: its lock is gone
        assert lock.held
        info = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
        assert info["pid"] == os.getpid()
    assert not lock.held


def test_two_runs_into_one_out_directory_do_not_mix(tmp_path, capsys):
    """The issue's case: `cl run --strategy nmc --out x & cl run --strategy finetune --out x`
    both exited 0 with nmc's config and finetune's checkpoints."""
    out = tmp_path / "x"
    with held_by_child(out) as pid:
        code = main(["run", "--strategy", "finetune", "--out", str(out), "--set", "stream.n_tasks=2",
                     "--no-progress"])
        assert code == 2
        assert f"is in use by process {pid}" in capsys.readouterr().err
        assert not (out / "config.toml").exists() and not (out / "results.json").exists()


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="is not writable"):
        RunLock(blocker / "run").acquire()
    lock = RunLock(tmp_path / "run")
    with pytest.raises(ZeroDivisionError), lock:
        raise ZeroDivisionError
    assert not lock.held
    with RunLock(tmp_path / "run"):
        pass


def _free_for_another_process(run_dir: Path) -> bool:
    """Whether a forked child can take ``run_dir``'s lock."""
    pid = os.fork()
    if pid == 0:
        try:
            RunLock(run_dir).acquire()
            os._exit(0)
        except RunDirectoryInUse:
            os._exit(1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status) == 0


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    outer = RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run") as inner:
        assert inner.held and not _free_for_another_process(tmp_path / "run")
    assert outer.held and not _free_for_another_process(tmp_path / "run")
    outer.release()
    assert _free_for_another_process(tmp_path / "run")
