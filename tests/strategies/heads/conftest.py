"""Fixture of the head tests: one runner pass of a registered strategy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import strategies
from cl.core.runner import Runner
from cl.models.backbones import create_backbone
from streams.core import Stream


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``run(stream, name, backbone="pixels", **options)``: results dict of one run (each call
    in its own run directory)."""

    def _run(stream: Stream, name: str, backbone: str = "pixels", **options: Any) -> dict[str, Any]:
        runner = Runner(stream, strategies.get(name, **options), create_backbone(backbone),
                        out_dir=tmp_path / f"run-{name}-{len(list(tmp_path.glob('run-*')))}", cache_dir=str(tmp_path / "cache"),
                        progress=False)
        return runner.run().results

    return _run
