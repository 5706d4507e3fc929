"""Fixtures of the fidelity-suite tests."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="session")
def suite():
    """``experiments/fidelity/run.py`` as a module (loaded by the test module's ``load_suite``)."""
    return sys.modules["fidelity_run"]
