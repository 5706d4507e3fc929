"""Run the fidelity suite: ``python experiments/fidelity/run.py [NAMES...] [--refs DIR] [--markdown OUT]``.

Every module of ``experiments/fidelity/`` that defines ``NAME`` and ``run`` is a group (one ledger
section of ``docs/fidelity.md``). Groups whose references are git repositories that are not
available are skipped, with the command that fetches them; everything else must pass: the exit
status is 1 when a row exceeds its tolerance, a group raises, or a PyPI reference is missing.

``--markdown OUT`` writes each group's table between ``<!-- fidelity:NAME -->`` markers; when OUT
exists, only the blocks of the groups that ran are replaced. ``experiments/fidelity/recorded.md``
is the recorded output the ledger quotes (``tests/fidelity/test_ledger.py`` checks the ledger's
blocks against it).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NOT_GROUPS = {"common", "run", "__init__"}
BLOCK = re.compile(r"<!-- fidelity:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /fidelity:(?P=name) -->\n",
                   re.DOTALL)


def load_common() -> ModuleType:
    """``experiments/fidelity/common.py`` as the module ``common`` (what groups import)."""
    if "common" in sys.modules and getattr(sys.modules["common"], "__file__", "") == str(
            HERE / "common.py"):
        return sys.modules["common"]
    spec = importlib.util.spec_from_file_location("common", HERE / "common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["common"] = module
    spec.loader.exec_module(module)
    return module


def discover() -> dict[str, ModuleType]:
    """Every group module, by its ``NAME``, in file order (module top levels import no torch)."""
    load_common()
    groups: dict[str, ModuleType] = {}
    for path in sorted(HERE.glob("*.py")):
        if path.stem in NOT_GROUPS:
            continue
        name = f"fidelity_group_{path.stem}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        if hasattr(module, "NAME") and hasattr(module, "run"):
            if module.NAME in groups:
                raise ValueError(f"two fidelity groups are named {module.NAME!r}: {path}.")
            groups[module.NAME] = module
    return groups


@dataclass
class Outcome:
    name: str
    rows: list = field(default_factory=list)
    skipped: str = ""      # a missing git reference: why and how to fetch it
    error: str = ""        # a missing PyPI reference or an exception
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.error) or any(not r.passed for r in self.rows)


def run_group(module: ModuleType, refs) -> Outcome:
    """Run one group, turning a missing reference into a skip (git) or an error (PyPI)."""
    common = load_common()
    out = Outcome(module.NAME)
    start = time.perf_counter()
    try:
        out.rows = list(module.run(refs))
        if not out.rows:
            out.error = "the group returned no rows"
    except common.MissingReference as exc:
        pypi = any(isinstance(r, common.PyPI) for r in module.REFERENCES) and not any(
            isinstance(r, common.Git) for r in module.REFERENCES)
        if pypi:
            out.error = f"missing PyPI reference: {exc}"
        else:  # name every missing git reference of the group, not only the first
            missing = []
            for ref in module.REFERENCES:
                try:
                    refs.path(ref)
                except common.MissingReference as each:
                    missing.append(str(each))
            out.skipped = "; ".join(missing) or str(exc)
    except Exception:  # noqa: BLE001 - reported, and the exit status says it failed
        out.error = traceback.format_exc()
    out.seconds = time.perf_counter() - start
    return out


def table(module: ModuleType, rows: list, used: dict | None = None) -> str:
    """A group's rows as a markdown block (with its markers); ``used`` (:attr:`Refs.used`) marks
    the references that were snapshots rather than git checkouts."""
    common = load_common()
    refs = "; ".join(r.label + (" (files of that commit, not a git checkout)"
                                if (used or {}).get(r, "").startswith("snapshot") else "")
                     for r in module.REFERENCES)
    lines = [f"<!-- fidelity:{module.NAME} -->",
             f"`{module.NAME}`: {module.DESCRIPTION}. Reference: {refs}. "
             f"Reproduce: `python experiments/fidelity/run.py {module.NAME}"
             + (" --refs DIR" if any(isinstance(r, common.Git) for r in module.REFERENCES)
                else "") + "`.",
             "",
             "| method | compared | max abs | max rel | dtype | tolerance | note |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        tol = f"{common.fmt(r.tol)} ({r.tol_on})"
        lines.append(f"| {r.method} | {r.compared} | {common.fmt(r.max_abs)} | "
                     f"{common.fmt(r.max_rel)} | {r.dtype} | {tol} | {r.note} |")
    lines.append(f"<!-- /fidelity:{module.NAME} -->")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, blocks: dict[str, str]) -> None:
    """Write ``blocks`` into ``path``, keeping the blocks of groups that did not run."""
    old = path.read_text() if path.exists() else ""
    kept = {m["name"]: m.group(0) for m in BLOCK.finditer(old)}
    kept.update(blocks)
    import numpy
    import torch

    header = ("# Fidelity suite: recorded output\n\n"
              "Written by `python experiments/fidelity/run.py --refs DIR --markdown "
              "experiments/fidelity/recorded.md`; `docs/fidelity.md` quotes these blocks "
              "verbatim (checked by `tests/fidelity/test_ledger.py`). Last written with Python "
              f"{platform.python_version()}, torch {torch.__version__}, numpy "
              f"{numpy.__version__}, on {platform.machine()} CPU.\n\n")
    path.write_text(header + "\n".join(kept[k] for k in sorted(kept)))


def sync_ledger(ledger: Path, recorded: Path) -> list[str]:
    """Replace every group block of ``ledger`` by the block of the same group in ``recorded``;
    returns the names of the blocks replaced."""
    blocks = {m["name"]: m.group(0) for m in BLOCK.finditer(recorded.read_text())}
    done: list[str] = []

    def swap(m: re.Match) -> str:
        if m["name"] in blocks:
            done.append(m["name"])
            return blocks[m["name"]]
        return m.group(0)

    ledger.write_text(BLOCK.sub(swap, ledger.read_text()))
    return done


def main(argv: list[str] | None = None) -> int:
    common = load_common()
    groups = discover()
    epilog = "groups:\n" + "\n".join(f"  {n:<16} {m.DESCRIPTION}" for n, m in groups.items())
    parser = argparse.ArgumentParser(
        prog="experiments/fidelity/run.py", description=__doc__.split("\n\n")[0],
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help="groups to run (default: all)")
    parser.add_argument("--refs", action="append", default=[], type=Path, metavar="DIR",
                        help="a directory holding OWNER/REPO checkouts at the pinned commits")
    parser.add_argument("--cache", type=Path, default=common.CACHE,
                        help=f"where fetched references live (default {common.CACHE})")
    parser.add_argument("--fetch", action="store_true",
                        help="git clone / pip install --target references found nowhere")
    parser.add_argument("--markdown", type=Path, metavar="OUT", help="write the tables to OUT")
    parser.add_argument("--ledger", type=Path, metavar="DOC",
                        help="after --markdown OUT, copy OUT's blocks into DOC's blocks of the "
                        "same groups (e.g. docs/fidelity.md)")
    parser.add_argument("--require-all", action="store_true",
                        help="a skipped group (missing git reference) is a failure")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in groups]
    if unknown:
        parser.error(f"unknown group(s) {unknown}; known: {', '.join(groups)}")
    selected = [groups[n] for n in (args.names or groups)]
    refs = common.Refs(dirs=tuple(args.refs), cache=args.cache, fetch=args.fetch)
    # Pinned PyPI versions the environment lacks go first on sys.path before any import.
    for p in refs.pypi_paths(r for m in selected for r in m.REFERENCES):
        sys.path.insert(0, str(p))

    outcomes = []
    for module in selected:
        print(f"== {module.NAME}: {module.DESCRIPTION}", flush=True)
        out = run_group(module, refs)
        outcomes.append(out)
        for r in out.rows:
            status = "ok  " if r.passed else "FAIL"
            print(f"  {status} {r.method} | {r.compared} | abs {common.fmt(r.max_abs)} "
                  f"rel {common.fmt(r.max_rel)} ({r.dtype}; tol {common.fmt(r.tol)} on "
                  f"{r.tol_on}){' | ' + r.note if r.note else ''}", flush=True)
        if out.skipped:
            print(f"  skipped: {out.skipped}")
        if out.error:
            print(f"  ERROR: {out.error}")
        print(f"  ({out.seconds:.1f} s)", flush=True)

    if args.markdown:
        write_markdown(args.markdown, {o.name: table(groups[o.name], o.rows, refs.used)
                                       for o in outcomes if o.rows and not o.error})
    if args.ledger:
        if not args.markdown:
            parser.error("--ledger DOC needs --markdown OUT (the blocks are copied from OUT)")
        print(f"{args.ledger}: updated blocks {sync_ledger(args.ledger, args.markdown)}")
    for ref, where in refs.used.items():
        print(f"reference {ref.label}: {where}")
    skipped = [o for o in outcomes if o.skipped]
    failed = [o for o in outcomes if o.failed]
    ran = [o for o in outcomes if not o.skipped]
    print(f"\n{len(ran)} group(s) ran, {sum(len(o.rows) for o in ran)} rows, "
          f"{len(failed)} failed, {len(skipped)} skipped (missing git references)")
    for o in skipped:
        print(f"  skipped {o.name}: {o.skipped}")
    for o in failed:
        bad = [r.method for r in o.rows if not r.passed]
        print(f"  FAILED {o.name}: " + (", ".join(bad) if bad else o.error.splitlines()[-1]))
    return 1 if failed or (args.require_all and skipped) else 0


if __name__ == "__main__":
    sys.path.remove(str(HERE)) if str(HERE) in sys.path else None  # groups never shadow packages
    sys.exit(main())
