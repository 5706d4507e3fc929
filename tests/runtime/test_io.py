"""Atomic writes: files get the umask's permissions, and killed writers' temporaries are removed."""

from __future__ import annotations

import os
import time

import pytest

from cl.runtime.io import atomic_write_text, remove_temporaries


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mode):
    """A feature cache shared by a group needs group-readable files (mkstemp made them 0600)."""
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == mode


def test_remove_temporaries_removes_only_old_write_leftovers(tmp_path):
    old, new = tmp_path / ".a.json.0123.tmp", tmp_path / ".b.json.4567.tmp"
    keep = tmp_path / "c.tmp"  # not a hidden temporary of an atomic write
    for path in (old, new, keep):
        path.write_text("partial")
    past = time.time() - 3600
    os.utime(old, (past, past))
    assert remove_temporaries(tmp_path, older_than=600) == [old]
    assert remove_temporaries(tmp_path) == [new]
    assert keep.exists() and not old.exists() and not new.exists()
    assert remove_temporaries(tmp_path / "missing") == []
