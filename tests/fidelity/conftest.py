"""Fixtures of the fidelity-suite tests, and the suite itself loaded once.

``experiments/fidelity/run.py`` (which registers ``common`` and discovers the groups) is loaded
here, at conftest import, into ``sys.modules["fidelity_run"]``: pytest imports this file before
the test modules of this folder, which read the groups at collection time.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

RUN_PY = Path(__file__).resolve().parents[2] / "experiments" / "fidelity" / "run.py"

if "fidelity_run" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("fidelity_run", RUN_PY)
    sys.modules["fidelity_run"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["fidelity_run"])


@pytest.fixture(scope="session")
def suite():
    """``experiments/fidelity/run.py`` as a module."""
    return sys.modules["fidelity_run"]
