"""Fixtures of the prompt-method tests: the frozen ``toy-clip`` backbone and a small ``toy-cil``."""

from __future__ import annotations

import pytest

import streams
from cl.models.backbones import create_backbone


@pytest.fixture(scope="module")
def pristine():
    """A fresh ``toy-clip`` (tests deep-copy it before training)."""
    return create_backbone("toy-clip")


@pytest.fixture(scope="module")
def stream():
    """``toy-cil``: 5 tasks of 2 classes, 12 training and 6 test images per class."""
    return streams.get("toy-cil", n_train=12, n_test=6)
