"""Facts needed to repeat a run: library versions, hardware, the project's git commit."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cl import DISTRIBUTION

if TYPE_CHECKING:
    import torch

def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """Commit of the project's checkout, when it is one (else ``None``)."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("-dirty" if dirty else "")


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and hardware facts needed to repeat a run (and how many processes ran it)."""
    import torch

    from cl.runtime import distributed

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cl": _version(DISTRIBUTION),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "open_clip": _version("open_clip_torch"),
        "peft": _version("peft"),
        "avalanche": _version("avalanche-lib"),
        "scikit-learn": _version("scikit-learn"),
        "numpy": _version("numpy"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(),
        "world_size": distributed.world_size(),
        "git_commit": git_commit(),
    }
