"""`cl list` reads in a file or a pipe: one block per entry with one option per line, wrapped to
100 columns, or JSON; the table (one option per line) stays on a terminal."""

from __future__ import annotations

import json
import subprocess
import sys

import strategies
from cl.cli import main


def test_piped_listing_is_wrapped_blocks_with_one_option_a_line():
    out = subprocess.run([sys.executable, "-m", "cl", "list", "strategies"], check=True,
                         capture_output=True, text=True).stdout
    assert max(len(line) for line in out.splitlines()) <= 100
    blocks = {b.splitlines()[0]: b.splitlines()[1:] for b in out.strip().split("\n\n")}
    assert set(strategies.STRATEGIES.available()) <= set(blocks)
    options = strategies.STRATEGIES.options("nmc")
    lines = blocks["nmc"]
    assert lines[lines.index("  options:") + 1:] == [f"    {k}: {v}" for k, v in options.items()]


def test_json_lists_every_option_with_its_type_and_default(capsys):
    assert main(["list", "strategies", "--format", "json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert entries["gda"]["options"] == strategies.STRATEGIES.options("gda")
    assert entries["nmc"]["description"] == strategies.STRATEGIES.entry("nmc").describe()[0]


def test_the_table_puts_one_option_per_line(capsys):
    assert main(["list", "plugins", "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert any(line.count("│") >= 3 and "memory_size: int = 200" in line
               and "replay_batch_size" not in line for line in out.splitlines())
