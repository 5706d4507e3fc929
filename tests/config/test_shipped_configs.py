"""The shipped configs (experiments/**/*.toml) as a user meets them: the commands written in each
file's header run (as dry runs, offline), and none fixes the run directory, so a second command
of the same header never lands in the first one's directory."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from cl.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "experiments").rglob("*.toml"))
#: A command in a config's leading comment block: ``# Run:  cl run ...`` or ``#   cl run ...``.
COMMAND = re.compile(r"^#\s*(?:Run:)?\s*(cl (?:run|sweep) .*?)\s*$")


def header_commands(path: Path) -> list[str]:
    """The ``cl run`` / ``cl sweep`` commands of the comment block that opens ``path``."""
    commands = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        match = COMMAND.match(line)
        if match:
            commands.append(match.group(1))
    return commands


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "experiments")))
def test_no_shipped_config_hard_codes_its_run_directory(path):
    assert "out" not in tomllib.loads(path.read_text()), (
        f"{path}: leave out = ... to the command line (--out), so that each command of its "
        "header gets its own run directory")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "experiments")))
def test_the_commands_in_a_config_header_run(path, tmp_path, capsys, monkeypatch):
    """Each command as written (from the repository root, the data root an empty directory),
    with --dry-run; their run directories differ."""
    commands = header_commands(path)
    assert commands, f"{path}: its header should say how to run it ('# Run:  cl run --config ...')"
    monkeypatch.chdir(ROOT)
    outs = []
    for command in commands:
        argv = [str(tmp_path) if a == "/path/to/datasets" else a for a in shlex.split(command)[1:]]
        assert f"experiments/{path.relative_to(ROOT / 'experiments')}" in argv, command
        assert main([*argv, "--dry-run"]) == 0, (command, capsys.readouterr().err)
        assert "tasks:" in capsys.readouterr().out
        outs.append(argv[argv.index("--out") + 1] if "--out" in argv else None)
    named = [o for o in outs if o is not None]
    assert len(set(named)) == len(named), f"{path}: two commands share a run directory: {outs}"
