"""Fault injection: a run SIGKILLed at each write point resumes to the uninterrupted matrix, and
a flipped byte in any file a run writes is caught (or changes nothing it reads).

Each kill happens in a forked child process at an exact point of a write: the
child wraps ``os.fsync`` and ``os.replace`` (which every atomic write goes
through) and sends itself SIGKILL when the file named by the case is reached.
The parent then resumes the run in-process with the same command and compares
the accuracy matrix with an uninterrupted run's, bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cl.cli import main
from cl.core.checkpoint import CheckpointStore
from cl.core.results import load_results
from cl.core.state import state_digest
from cl.models.features import FeatureCache

ARGS = ["--stream", "split-digits", "--strategy", "finetune", "--set", "strategy.epochs=1",
        "--set", "strategy.hidden=16", "--no-progress"]  # 5 tasks: pruning happens from task 2


def run(out: Path, *extra: str) -> int:
    return main(["run", "--out", str(out), *ARGS, *extra])


def matrix(out: Path) -> list:
    return json.loads((out / "results.json").read_text())["accuracy_matrix"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list:
    """The uninterrupted run's accuracy matrix."""
    root = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CL_CACHE_DIR", str(root / "cache"))
        assert run(root / "run") == 0
    return matrix(root / "run")


# -- killing a child at an exact point -------------------------------------------------
def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _install(point: str, name: str, nth: int) -> None:
    """In the child: SIGKILL self at ``point`` of the ``nth`` write of a file whose name holds
    ``name``. Points: ``mid-write`` (the temporary file cut to half its size, before rename),
    ``before-rename`` (complete temporary file, not renamed), ``after-rename`` (renamed; the
    next step, such as pruning or the manifest, never runs)."""
    real_fsync, real_replace = os.fsync, os.replace
    seen = {"n": 0}

    def hit(path: str) -> bool:
        if name not in Path(path).name:
            return False
        seen["n"] += 1
        return seen["n"] == nth

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if point == "mid-write" and hit(_fd_path(fd)):
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            os.kill(os.getpid(), signal.SIGKILL)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str], **dir_fds: int) -> None:
        if point == "before-rename" and hit(str(dst)):
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, **dir_fds)
        if point == "after-rename" and hit(str(dst)):
            os.kill(os.getpid(), signal.SIGKILL)

    os.fsync, os.replace = fsync, replace


def kill_at(out: Path, point: str, name: str, nth: int) -> None:
    """Run ``cl run`` in a forked child that SIGKILLs itself at the given point."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            _install(point, name, nth)
            run(out)
        finally:
            os._exit(99)  # the kill point was never reached
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"child was not killed at {point} of {name} #{nth} (status {status})")


WRITE_POINTS = [
    # (point, file, nth write): where the child dies
    ("mid-write", "task-0001.pt", 1),        # mid-checkpoint
    ("before-rename", "task-0001.pt", 1),    # checkpoint complete, not renamed
    ("after-rename", "task-0002.pt", 1),     # renamed, before pruning task-0000.pt
    ("mid-write", "results.json", 2),        # mid-results (after task 0)
    ("before-rename", "results.json", 3),    # results after task 1 complete, not renamed
    ("after-rename", ".safetensors", 2),     # between cache data and manifest
    ("mid-write", ".safetensors", 1),        # mid cache data
    ("mid-write", "config.toml", 1),         # before anything else exists
]


@pytest.mark.parametrize("point, name, nth", WRITE_POINTS[:3] + WRITE_POINTS[5:6])
def test_sigkill_at_a_write_point_then_resume_is_bit_identical(tmp_path, monkeypatch, reference,
                                                               point, name, nth):
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))  # a cold cache: its writes happen
    out = tmp_path / "run"
    kill_at(out, point, name, nth)
    assert run(out) == 0  # the same command resumes
    assert matrix(out) == reference
    assert not list(out.rglob("*.tmp"))  # the killed writer's temporary file was removed
    assert [p.name for p in CheckpointStore(out).checkpoints()] == ["task-0004.pt", "task-0003.pt"]
    cache = FeatureCache(tmp_path / "cache")
    assert len(cache.entries()) == 10 and all(e["n"] > 0 for e in cache.entries())


@pytest.mark.slow
@pytest.mark.parametrize("point, name, nth", WRITE_POINTS[3:5] + WRITE_POINTS[6:])
def test_sigkill_at_more_write_points(tmp_path, monkeypatch, reference, point, name, nth):
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    kill_at(out, point, name, nth)
    assert run(out) == 0
    assert matrix(out) == reference
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_repeated_kills_at_every_checkpoint_still_resume_bit_identical(tmp_path, monkeypatch,
                                                                      reference):
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    for name in ("task-0000.pt", "task-0001.pt", "task-0002.pt"):
        kill_at(out, "before-rename", name, 1)
    assert run(out) == 0
    assert matrix(out) == reference


# -- byte flips ----------------------------------------------------------------------------
@contextlib.contextmanager
def flipped(path: Path, position: int, mask: int = 0xFF) -> Iterator[None]:
    """``path`` with the bits ``mask`` of the byte at ``position`` inverted, restored afterwards."""
    original = path.read_bytes()
    data = bytearray(original)
    data[position] ^= mask
    path.write_bytes(bytes(data))
    try:
        yield
    finally:
        path.write_bytes(original)


@pytest.fixture
def finished(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert run(out) == 0
    return out


def _fingerprint(state: dict) -> tuple:
    return (state["task"], json.dumps(state["tracker"], sort_keys=True),
            state_digest(state["strategy"]), state_digest(state["plugins"]))


def test_every_flipped_byte_of_a_checkpoint_is_caught_or_harmless(finished):
    store = CheckpointStore(finished)
    newest = store.checkpoints()[0]
    good = _fingerprint(store.load_latest(quarantine=False))
    size = newest.stat().st_size
    caught = harmless = 0
    for position in range(0, size, max(1, size // 400)):
        with flipped(newest, position), warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            state = store.load_latest(quarantine=False)
        if _fingerprint(state) == good:
            harmless += 1  # e.g. a byte of zip padding or a timestamp nothing reads
        else:
            assert state["task"] == 3, f"flip at {position} was loaded as task {state['task']}"
            assert any("task-0004.pt" in str(w.message) for w in seen)
            caught += 1
    assert caught > 0.5 * (caught + harmless)


def test_a_flipped_exponent_in_nmc_statistics_falls_back_and_resumes_right(tmp_path, monkeypatch):
    """The issue's case: one exponent byte of NMC's class sums took an entry from -5.37 to
    -54,248.9 and was loaded silently. Now the resume warns, reruns the task and gets the
    uninterrupted numbers."""
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "nmc"
    nmc = ["--set", "stream.n_tasks=2", "--no-progress"]
    assert main(["run", "--out", str(out), *nmc]) == 0
    full = matrix(out)
    newest = CheckpointStore(out).checkpoints()[0]
    state = torch.load(newest, weights_only=True)
    sums = next(v for k, v in state["strategy"]["stats"].items() if "sum" in k)
    raw = newest.read_bytes()
    at = raw.find(sums.numpy().tobytes())
    assert at > 0
    data = bytearray(raw)
    data[at + sums.element_size() - 1] ^= 0x08  # the top (sign and exponent) byte of entry 0
    newest.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="task-0001.pt.*do not match their sha256"):
        assert main(["run", "--out", str(out), *nmc]) == 0
    assert matrix(out) == full
    assert not list((out / "checkpoints").glob("*.corrupt"))  # pruned once task 1 is redone


def test_a_changed_digit_in_results_json_is_refused_by_report(finished, capsys):
    path = finished / "results.json"
    text = path.read_text()
    value = json.loads(text)["accuracy_matrix"][0][0]
    edited = text.replace(repr(value), repr(value)[:2] + "0" + repr(value)[3:], 1)
    assert edited != text
    path.write_text(edited)
    assert main(["report", str(finished)]) == 2
    assert "does not match its sha256 checksum" in capsys.readouterr().err
    with pytest.warns(RuntimeWarning, match="using it anyway"):
        assert main(["report", "--allow-modified", str(finished)]) == 0
    assert "modified after the run" in (finished / "report.md").read_text()
    # resuming the completed run rewrites results.json from its checkpoints
    assert run(finished) == 0
    assert load_results(finished)["accuracy_matrix"] == json.loads(text)["accuracy_matrix"]


def test_every_flipped_byte_of_results_json_is_caught_or_harmless(finished):
    path = finished / "results.json"
    good = load_results(finished)
    size = path.stat().st_size
    caught = harmless = 0
    for position in range(0, size, 3):  # the lowest bit: digits stay digits ("0.633" -> "0.623")
        with flipped(path, position, 0x01), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                loaded = load_results(finished)
            except ValueError:  # invalid JSON, IntegrityError, schema
                caught += 1
                continue
        assert loaded == good, f"flip at {position} changed what was read"
        harmless += 1  # the 17th digit of a float that parses to the same float
    assert harmless <= size // 300


def test_every_flipped_byte_of_a_cache_entry_is_rebuilt_or_harmless(finished, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    entry = cache.entries()[0]
    data = Path(entry["path"])
    manifest = data.with_suffix(".json")
    key = entry["key"]
    good = cache.load(key)
    for path in (data, manifest):
        size = path.stat().st_size
        for position in range(0, size, max(1, size // 150)):
            with flipped(path, position), warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                loaded = cache.load(key)
            if loaded is None:
                assert any("corrupt" in str(w.message) for w in seen)
            else:
                assert torch.equal(loaded.X, good.X) and torch.equal(loaded.y, good.y), (
                    f"flip at {position} of {path.name} changed the features")


def test_an_edited_config_toml_is_refused_on_resume_naming_the_change(tmp_path, monkeypatch,
                                                                    capsys):
    """The issue's case: task 0 trained with lr 0.05, config.toml edited to lr 0.5, and the
    resume used it while results.json claimed 0.5 throughout."""
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert run(out, "--set", "strategy.lr=0.05") == 0
    CheckpointStore(out).checkpoints()[0].unlink()  # as if killed during the last task
    config = out / "config.toml"
    config.write_text(config.read_text().replace("lr = 0.05", "lr = 0.5"))
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "different run setup" in err and "strategy.lr: 0.05 -> 0.5" in err


if sys.platform != "linux":  # /proc/self/fd and fork
    pytestmark = pytest.mark.skip("fault injection needs Linux")
