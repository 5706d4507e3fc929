"""A real two-task run shared by the reporting tests, and the parser of `cl compare`'s Markdown."""

import json

import pytest

from cl.cli import main


@pytest.fixture(scope="session")
def nmc_results(tmp_path_factory):
    """``results.json`` of `cl run` with the offline defaults on two tasks (nmc on pixels)."""
    out = tmp_path_factory.mktemp("run") / "nmc"
    assert main(["run", "--out", str(out), "--set", "stream.n_tasks=2", "--no-progress"]) == 0
    return json.loads((out / "results.json").read_text())


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def tables(text):
    """Markdown → {section heading: list of row dicts keyed by that table's header}."""
    out, heading, header = {}, None, None
    for line in text.splitlines():
        if line.startswith("## "):
            heading, header = line[3:], None
        elif line.startswith("|---"):
            continue
        elif line.startswith("|"):
            if header is None:
                header = cells(line)
                out[heading] = []
            else:
                out[heading].append(dict(zip(header, cells(line), strict=True)))
        else:
            header = None
    return out


def table_rows(text):
    """The rows of every protocol table (P1, P2...) of a comparison, in order."""
    return [row for heading, rows in tables(text).items() if heading and heading[:1] == "P"
            for row in rows]


@pytest.fixture(name="tables")
def tables_fixture():
    """:func:`tables`: Markdown of `cl compare` → {section heading: row dicts}."""
    return tables


@pytest.fixture(name="table_rows")
def table_rows_fixture():
    """:func:`table_rows`: the rows of every protocol table."""
    return table_rows
