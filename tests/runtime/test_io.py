"""Atomic writes: files get the umask's permissions, killed writers' temporaries are removed, and
no write follows a link planted inside the directory its writer owns."""

from __future__ import annotations

import os
import time

import pytest

from cl.errors import LinkRefused
from cl.runtime.io import atomic_write_text, open_append, remove_temporaries
from cl.runtime.lock import RunLock


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


def test_no_write_follows_a_link_below_its_root(tmp_path):
    """A directory link planted below the root is refused (named); the root may be a link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "real").mkdir()
    (tmp_path / "run").symlink_to(tmp_path / "real")  # the run directory itself: allowed
    atomic_write_text(tmp_path / "run" / "sub" / "a.json", "{}", root=tmp_path / "run")
    assert (tmp_path / "real" / "sub" / "a.json").read_text() == "{}"
    (tmp_path / "run" / "planted").symlink_to(outside)
    with pytest.raises(LinkRefused, match=r"'.*run/planted': it is a symbolic link \(to '.*outside'\)"):
        atomic_write_text(tmp_path / "run" / "planted" / "b.json", "{}", root=tmp_path / "run")
    assert list(outside.iterdir()) == []


def test_in_place_writes_refuse_symbolic_and_hard_links(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    run = tmp_path / "run"
    run.mkdir()
    (run / "log").symlink_to(victim)
    with pytest.raises(LinkRefused, match=r"'.*run/log': it is a symbolic link"):
        open_append(run / "log", root=run)
    os.link(victim, run / ".lock")
    with pytest.raises(LinkRefused, match=r"'.*run/.lock': it has other names \(hard links\)"):
        RunLock(run).acquire()
    assert victim.read_text() == "keep"
    with open_append(run / "new.log", root=run) as fh:
        fh.write(b"ok\n")
    assert (run / "new.log").read_bytes() == b"ok\n"


def test_a_planted_link_in_the_feature_cache_is_refused(tmp_path):
    import torch

    from cl.models.features import FeatureCache, Features

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "features").symlink_to(tmp_path / "elsewhere")
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(LinkRefused, match=r"cache/features'"):
        cache.store({"k": 1}, Features(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)),
                    backbone_name="b")
    (tmp_path / "elsewhere" / "mine.txt").write_text("keep")
    with pytest.raises(LinkRefused, match=r"cache/features'"):  # cl cache clear
        cache.clear()
    assert [p.name for p in (tmp_path / "elsewhere").iterdir()] == ["mine.txt"]


def test_a_planted_link_in_a_sweep_directory_is_refused(tmp_path):
    from types import SimpleNamespace

    from cl.sweep.index import INDEX_FILE, write_index, write_job

    victim = tmp_path / "victim.json"
    victim.write_text("keep")
    sweep = tmp_path / "sweeps" / "s"
    sweep.mkdir(parents=True)
    (sweep / INDEX_FILE).symlink_to(victim)
    runs = [SimpleNamespace(id="r0", overrides={})]
    with pytest.raises(LinkRefused, match=rf"'.*s/{INDEX_FILE}': it is a symbolic link"):
        write_index(sweep, "s", None, runs, {"kind": "local"})
    (sweep / "r0").symlink_to(tmp_path)  # a run directory planted as a link out of the sweep
    with pytest.raises(LinkRefused, match=r"'.*s/r0': it is a symbolic link"):
        write_job(sweep / "r0", state="running")
    assert victim.read_text() == "keep" and not (tmp_path / "job.json").exists()
