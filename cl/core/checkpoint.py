"""Per-task checkpoints of a run, written atomically, for crash-safe resume.

``RUN_DIR/checkpoints/task-0003.pt`` holds everything needed to continue after
task 3: the tracker (as JSON) and the strategy's and plugins' ``state_dict``
(the run's config is ``RUN_DIR/config.toml``, checked by :meth:`CheckpointStore.prepare`). Files are written to a temporary sibling and renamed, so a
half-written checkpoint never has the final name; a checkpoint that fails to
load anyway (disk corruption) is skipped with a warning and the previous one
is used. The newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cl.config import RunConfig, config_difference
from cl.runtime import distributed
from cl.runtime.io import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from cl.core.tracker import Tracker

logger = logging.getLogger("cl")
FORMAT = 1


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
        """Create the run directory, check it is writable, and write or check ``config.toml``.

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
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise PermissionError(
                f"output directory {str(self.out_dir)!r} is not writable ({err.strerror}); "
                "choose another with --out."
            ) from err
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
        atomic_write_text(path, config.to_toml())
        distributed.barrier()

    def checkpoints(self) -> list[Path]:
        """Checkpoint files, newest task first."""
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob("task-*.pt"), reverse=True)

    def save(self, t: int, tracker: Tracker, strategy_state: dict[str, Any],
             plugin_states: list[dict[str, Any]]) -> Path:
        """Write the checkpoint after task ``t`` and prune older ones (rank 0 only)."""
        path = self.dir / f"task-{t:04d}.pt"
        if not distributed.is_main():
            distributed.barrier()
            return path
        state: dict[str, Any] = {
            "format": FORMAT,
            "task": t,
            "tracker": json.dumps(tracker.to_dict()),
            "strategy": strategy_state,
            "plugins": plugin_states,
        }
        try:
            atomic_write(path, lambda fh: torch.save(state, fh))
            for old in self.checkpoints()[self.keep :]:
                old.unlink(missing_ok=True)
        finally:
            distributed.barrier()
        return path

    def load_latest(self, *, quarantine: bool = True) -> dict[str, Any] | None:
        """The newest checkpoint that loads, or ``None``.

        Unreadable ones are skipped with a warning naming them and, when
        ``quarantine`` (the run's own resume), renamed ``*.corrupt`` so the next
        write does not reuse them; readers of someone else's run pass False.
        """
        for path in self.checkpoints():
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                if not isinstance(state, dict) or state.get("format") != FORMAT:
                    raise ValueError("unknown checkpoint format")
                state["tracker"] = json.loads(state["tracker"])
                return state
            except Exception as err:  # noqa: BLE001 - any unreadable file: use the previous task
                msg = (f"checkpoint {path.name} in {self.dir} is unreadable ({type(err).__name__}: "
                       f"{err}); falling back to the previous one.")
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                logger.warning(msg)
                if quarantine and distributed.is_main():
                    os.replace(path, path.with_suffix(".corrupt"))
        return None
