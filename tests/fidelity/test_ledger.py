"""``docs/fidelity.md`` quotes the recorded output of the suite: every measured block in the ledger
equals the block of ``experiments/fidelity/recorded.md`` (written by
``python experiments/fidelity/run.py --refs DIR --markdown experiments/fidelity/recorded.md``),
every recorded group is quoted, and no page of ``docs/`` names a temporary path."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_PY = ROOT / "experiments" / "fidelity" / "run.py"


def load_suite():
    """``experiments/fidelity/run.py`` as a module (loaded once by ``conftest.py``)."""
    return sys.modules["fidelity_run"]


LEDGER = ROOT / "docs" / "fidelity.md"
RECORDED = ROOT / "experiments" / "fidelity" / "recorded.md"


def _blocks(text: str) -> dict[str, str]:
    return {m["name"]: m.group(0) for m in load_suite().BLOCK.finditer(text)}


def test_ledger_numbers_are_the_recorded_output():
    recorded, ledger = _blocks(RECORDED.read_text()), _blocks(LEDGER.read_text())
    assert recorded, "experiments/fidelity/recorded.md holds no group block"
    for name, block in ledger.items():
        assert name in recorded, f"docs/fidelity.md quotes group {name!r}, never recorded"
        assert block == recorded[name], (
            f"docs/fidelity.md's block of {name!r} differs from experiments/fidelity/recorded.md: "
            "copy the recorded block (after rerunning the group with --markdown).")
    missing = sorted(set(recorded) - set(ledger))
    assert not missing, f"recorded groups not quoted in docs/fidelity.md: {missing}"


def test_every_group_is_recorded():
    missing = sorted(set(load_suite().discover()) - set(_blocks(RECORDED.read_text())))
    assert not missing, f"groups never recorded in experiments/fidelity/recorded.md: {missing}"


def test_docs_name_no_temporary_path():
    hits = [(p.name, m.group(0)) for p in sorted((ROOT / "docs").rglob("*.md"))
            for m in re.finditer(r"/tmp/\S*", p.read_text())]
    assert not hits, f"docs name temporary paths: {hits}"
