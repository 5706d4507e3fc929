"""Per-task checkpoints of a run, written atomically and checksummed, for crash-safe resume.

``RUN_DIR/checkpoints/task-0003.pt`` holds everything needed to continue after
task 3 (a ``torch.save`` dict, readable with ``weights_only=True``):

``format``, ``task``
    Format version (2) and the task index.
``tracker``
    The tracker, as JSON.
``identity``
    JSON of the run's identity: the resolved config's
    :meth:`~cl.config.run_config.RunConfig.identity` and the path and SHA-256
    of every user code file it names (``None`` for runs without a config).
``owners``
    JSON of the class (and config options) of the strategy and of each plugin
    whose state follows.
``strategy``, ``plugins``
    The ``state_dict()`` of each, checked and encoded by :mod:`cl.core.state`.
``sha256``
    :func:`cl.core.state.state_digest` of all the above.

Files are written to a temporary sibling and renamed, so a half-written
checkpoint never has the final name. On load a checkpoint is verified: a file
that does not load, or whose contents do not match its ``sha256`` (a flipped
bit on disk), is skipped with a warning, renamed ``*.corrupt`` and the
previous one is used. :func:`check_resumable` then refuses a checkpoint
written by another config, another code file or another strategy.
The newest ``keep`` checkpoints are kept; a ``*.corrupt`` file is deleted once
its task has a good checkpoint again.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cl.config import RunConfig, config_difference
from cl.config.code import USER_MODULE_PREFIX
from cl.core.state import decode_state, encode_state, state_digest
from cl.errors import IntegrityError, PathRefused
from cl.runtime import distributed
from cl.runtime.io import (
    atomic_write,
    atomic_write_text,
    ensure_directory,
    open_in_place,
    refuse_link,
    remove_temporaries,
)

if TYPE_CHECKING:
    from cl.core.tracker import Tracker

logger = logging.getLogger("cl")
FORMAT = 2
FORMATS = (1, 2)  # 1: before checksums and identities (loaded unverified, with a warning)


def class_tag(obj: object) -> str:
    """``"module:QualName"`` of ``obj``'s class; ``"file.py:QualName"`` for classes loaded
    from a user file (whose module name changes with the file's path and edits)."""
    cls = type(obj)
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if cls.__module__.startswith(USER_MODULE_PREFIX) and file:
        return f"{Path(file).name}:{cls.__qualname__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def _task_index(path: Path) -> int:
    return int(path.stem.split("-")[1])


class CheckpointStore:
    """Checkpoints of one run directory.

    Parameters
    ----------
    out_dir : Path
    keep : int
        How many of the newest checkpoints to keep (>= 2, so a corrupt newest one
        can fall back to the previous task).
    """

    def __init__(self, out_dir: Path, keep: int = 2) -> None:
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / "checkpoints"
        self.keep = max(keep, 2)

    def prepare(self, config: RunConfig | None) -> None:
        """Create the run directory, check it is writable, remove temporary files a killed
        process left, and write or check ``config.toml``.

        Call it holding the directory's :class:`~cl.runtime.lock.RunLock`: no other
        process may be writing there.

        Raises
        ------
        PermissionError
            The directory cannot be created or written (the message names it).
        ValueError
            The directory holds a run of a different config (the differences are listed).
        """
        if not distributed.is_main():
            distributed.barrier()  # rank 0 creates the directory first
            return
        try:
            ensure_directory(self.dir, root=self.out_dir)
            probe = self.out_dir / ".write-test"
            os.close(open_in_place(probe, os.O_WRONLY, root=self.out_dir))
            probe.unlink()
        except PathRefused:
            raise
        except OSError as err:
            raise PermissionError(
                f"output directory {str(self.out_dir)!r} is not writable ({err.strerror}); "
                "choose another with --out."
            ) from err
        for leftover in remove_temporaries(self.out_dir) + remove_temporaries(self.dir):
            logger.info("removed %s, left by a process killed while writing", leftover)
        if config is None:
            distributed.barrier()
            return
        path = self.out_dir / "config.toml"
        if path.exists() and self.checkpoints():
            previous = RunConfig.from_file(path).identity()
            diffs = config_difference(previous, config.identity())
            if diffs:
                raise ValueError(
                    f"{str(self.out_dir)!r} holds a run with a different config; refusing to "
                    "resume it. Differences (existing -> requested): " + "; ".join(diffs)
                    + ". Use another --out, or the same settings."
                )
        atomic_write_text(path, config.to_toml(), root=self.out_dir)
        distributed.barrier()

    def checkpoints(self) -> list[Path]:
        """Checkpoint files, newest task first."""
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob("task-*.pt"), reverse=True)

    def save(self, t: int, tracker: Tracker, strategy_state: dict[str, Any],
             plugin_states: list[dict[str, Any]], *, identity: dict[str, Any] | None = None,
             owners: dict[str, Any] | None = None) -> Path:
        """Write the checkpoint after task ``t`` and prune older ones (rank 0 only).

        Parameters
        ----------
        t : int
        tracker : Tracker
        strategy_state, plugin_states : dict, list of dict
            ``state_dict()`` results (checked by :func:`cl.core.state.encode_state`).
        identity : dict or None
            The run's identity (config and code), compared on resume.
        owners : dict or None
            ``{"strategy": {"class", "options"}, "plugins": [...]}``, compared on resume.

        Raises
        ------
        ProtocolError
            A state holds something a checkpoint cannot store (its path is named).
        """
        path = self.dir / f"task-{t:04d}.pt"
        if not distributed.is_main():
            distributed.barrier()
            return path
        try:
            names = _owner_names(owners, len(plugin_states))
            state: dict[str, Any] = {
                "format": FORMAT,
                "task": t,
                "tracker": json.dumps(tracker.to_dict()),
                "identity": None if identity is None else json.dumps(identity, sort_keys=True),
                "owners": None if owners is None else json.dumps(owners, sort_keys=True),
                "strategy": encode_state(strategy_state, f"{names[0]}.state_dict()"),
                "plugins": [encode_state(s, f"{n}.state_dict()")
                            for s, n in zip(plugin_states, names[1:], strict=True)],
            }
            state["sha256"] = state_digest(state)
            atomic_write(path, lambda fh: torch.save(state, fh), root=self.out_dir)
            for old in self.checkpoints()[self.keep :]:
                old.unlink(missing_ok=True)
            for bad in self.dir.glob("task-*.corrupt"):
                if _task_index(bad) <= t:
                    bad.unlink(missing_ok=True)
        finally:
            distributed.barrier()
        return path

    def load_latest(self, *, quarantine: bool = True) -> dict[str, Any] | None:
        """The newest checkpoint that loads and matches its checksum, or ``None``.

        The result has the keys of the module docstring, with ``tracker``,
        ``identity`` and ``owners`` decoded from JSON, states decoded by
        :func:`cl.core.state.decode_state`, and ``path``. Bad ones are skipped
        with a warning naming them and, when ``quarantine`` (the run's own
        resume), renamed ``*.corrupt`` so the next write does not reuse them;
        readers of someone else's run pass False.
        """
        for path in self.checkpoints():
            refuse_link(path, root=self.out_dir)  # never load (nor quarantine) someone's link
            try:
                return _read(path)
            except Exception as err:  # noqa: BLE001 - any unreadable file: use the previous task
                msg = (f"checkpoint {path.name} in {self.dir} is unreadable ({type(err).__name__}: "
                       f"{err}); falling back to the previous one.")
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                logger.warning(msg)
                if quarantine and distributed.is_main():
                    os.replace(path, path.with_suffix(".corrupt"))
        return None


def _owner_names(owners: dict[str, Any] | None, n_plugins: int) -> list[str]:
    """Class names of the strategy and each plugin, for messages."""
    if owners is None:
        return ["strategy", *[f"plugin {i}" for i in range(n_plugins)]]
    return [owners["strategy"]["class"], *[p["class"] for p in owners["plugins"]]]


def _read(path: Path) -> dict[str, Any]:
    """Load and verify one checkpoint file (any failure raises)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") not in FORMATS:
        raise ValueError("unknown checkpoint format")
    if state["format"] == 1:
        warnings.warn(f"checkpoint {path} was written before checkpoints had checksums; it is "
                      "loaded unverified.", RuntimeWarning, stacklevel=3)
    else:
        stored = state.pop("sha256", None)
        if stored != state_digest(state):
            raise IntegrityError("its contents do not match their sha256 checksum (damaged file)")
        for key in ("identity", "owners"):
            state[key] = None if state[key] is None else json.loads(state[key])
    state["tracker"] = json.loads(state["tracker"])
    state["strategy"] = decode_state(state["strategy"])
    state["plugins"] = [decode_state(s) for s in state["plugins"]]
    state["path"] = path
    return state


def check_resumable(state: dict[str, Any], *, identity: dict[str, Any] | None,
                    owners: dict[str, Any]) -> None:
    """Refuse a checkpoint written by another config, code or strategy.

    Parameters
    ----------
    state : dict
        From :meth:`CheckpointStore.load_latest`.
    identity : dict or None
        This run's identity (``None``: no config, nothing to compare).
    owners : dict
        This run's strategy and plugin classes and options.

    Raises
    ------
    ValueError
        The differences (stored -> this run) are listed.
    """
    where = f"checkpoint {state['path'].name} in {state['path'].parent}"
    stored_identity = state.get("identity")
    if identity is not None and stored_identity is not None:
        diffs = config_difference(stored_identity, json.loads(json.dumps(identity)))
        if diffs:
            raise ValueError(
                f"{where} was written by a different run setup; refusing to resume, which would "
                "mix results of two setups (was config.toml or a code file edited?). "
                "Differences (checkpoint -> now): " + "; ".join(diffs)
                + ". Restore the original, or start afresh with another --out."
            )
    stored = state.get("owners")
    if stored is None:
        return
    now = json.loads(json.dumps(owners))
    pairs = [("strategy", stored["strategy"], now["strategy"])]
    if len(stored["plugins"]) != len(now["plugins"]):
        raise ValueError(
            f"{where} holds the states of {len(stored['plugins'])} plugins "
            f"({', '.join(p['class'] for p in stored['plugins']) or 'none'}), this run has "
            f"{len(now['plugins'])} ({', '.join(p['class'] for p in now['plugins']) or 'none'}); "
            "resume with the same plugins, or use another --out."
        )
    pairs += [(f"plugin {i}", a, b) for i, (a, b) in enumerate(zip(stored["plugins"], now["plugins"],
                                                                  strict=True))]
    for role, a, b in pairs:
        same_options = a.get("options") is None or b.get("options") is None \
            or a["options"] == b["options"]
        if a["class"] != b["class"] or not same_options:
            raise ValueError(
                f"{where} holds the state of {role} {a['class']} (options {a.get('options')}), "
                f"but this run's {role} is {b['class']} (options {b.get('options')}); loading one "
                "into the other would silently reset or corrupt it. Resume with the strategy "
                "that wrote it, or use another --out."
            )
