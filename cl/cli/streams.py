"""``cl streams show|check NAME``: a stream's ordered tasks, and which have data."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cl.reporting.terminal import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("streams", help="show a stream's tasks or check its data")
    sub = p.add_subparsers(dest="action", required=True)
    check_help = ("table of available/missing tasks and where each is expected "
                  "(exit status 1 when some are missing)")
    for action, text in (("show", "print the ordered tasks with years and class counts"),
                         ("check", check_help)):
        q = sub.add_parser(action, help=text, description=text)
        q.add_argument("name", help="stream name (cl list streams)")
        q.add_argument("--data-root", help="directory holding datasets (default ./data)")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="stream option, e.g. --set stream.stop_year=none or --set variant=short")
        q.set_defaults(func=handle)


def _options(assignments: list[str]) -> dict[str, Any]:
    from cl.config.options import parse_value

    out: dict[str, Any] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set stream.n_tasks=5.")
        key = key.removeprefix("stream.")
        parsed = parse_value(value)
        out[key] = None if isinstance(parsed, str) and parsed.lower() == "none" else parsed
    return out


def _build(name: str, data_root: str | None, options: dict[str, Any]):
    import streams

    entry = streams.STREAMS.entry(name)
    extra = {"data_root": data_root} if "data_root" in entry.reserved else {}
    return streams.get(name, **options, **extra)


def handle(args: argparse.Namespace) -> int:
    from streams import check_data

    options = _options(args.set)
    console = Console()
    if args.action == "show" and args.data_root is None and not Path("data").is_dir():
        # Showing the order needs no data: use an empty root (every external task shows as missing).
        with tempfile.TemporaryDirectory() as empty:
            stream = _build(args.name, empty, options)
            return _show(console, stream, check_data(stream))
    stream = _build(args.name, args.data_root, options)
    report = check_data(stream)
    if args.action == "show":
        return _show(console, stream, report)
    table = Table(title=f"{stream.name}: data under {args.data_root or './data'}")
    for col in ("#", "task", "status", "location", "detail"):
        table.add_column(col)
    for a in report:
        status = "[green]available[/green]" if a.available else "[red]missing[/red]"
        table.add_row(str(a.position), a.task, status, a.found_at or a.expected, a.detail)
    print_table(table, console)
    n_ok = sum(a.available for a in report)
    console.print(f"{n_ok} of {len(report)} tasks available; {len(report) - n_ok} missing.")
    return 0 if n_ok == len(report) else 1


def _show(console: Console, stream, report) -> int:
    known = all(t.n_classes_known for t in stream)
    table = Table(title=f"{stream.name} ({len(stream)} tasks, {stream.scenario}, "
                        f"{stream.n_classes}{'' if known else '+'} classes)")
    for col in ("#", "task", "year", "classes", "kind", "data"):
        table.add_column(col)
    for task, a in zip(stream, report, strict=True):
        kind = str(task.metadata.get("task_kind", ""))
        table.add_row(str(a.position), task.name, "" if task.year is None else str(task.year),
                      str(task.n_classes) if task.n_classes_known else "from data", kind,
                      "available" if a.available else "missing")
    print_table(table, console)
    for key in ("skipped_tasks", "dropped_multi_label"):
        if stream.metadata.get(key):
            console.print(f"{key}: {', '.join(stream.metadata[key])}")
    return 0
