"""A real two-task run shared by the reporting tests."""

import json

import pytest

from cl.cli import main


@pytest.fixture(scope="session")
def nmc_results(tmp_path_factory):
    """``results.json`` of `cl run` with the offline defaults on two tasks (nmc on pixels)."""
    out = tmp_path_factory.mktemp("run") / "nmc"
    assert main(["run", "--out", str(out), "--set", "stream.n_tasks=2", "--no-progress"]) == 0
    return json.loads((out / "results.json").read_text())
