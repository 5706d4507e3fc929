"""``cl list streams|strategies|backbones|plugins`` (reads sources; imports no torch).

On a terminal: a table, one option per line. Piped or redirected (``--format text``,
the default off a terminal): one block per entry, description wrapped and one option
per line, so a file reads without a table thousands of characters wide. ``--format
json``: ``[{"name", "description", "options": {option: "type = default"}}]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from rich.console import Console
from rich.table import Table

from cl.reporting.terminal import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="list streams, strategies, backbones or plugins")
    p.add_argument("what", choices=["streams", "strategies", "backbones", "plugins"])
    p.add_argument("--tags", action="store_true",
                   help="backbones: also every open_clip MODEL:TAG (imports open_clip)")
    p.add_argument("--format", choices=["table", "text", "json"], default=None,
                   help="table (default on a terminal), text (default when piped: one block per "
                        "entry, one option per line) or json")
    p.set_defaults(func=handle)


def text_blocks(rows: list[tuple[str, str, dict[str, str]]], width: int = 100) -> str:
    """One block per entry: its name, the description wrapped to ``width``, one option a line."""
    blocks = []
    for name, description, options in rows:
        lines = [name, *textwrap.wrap(description, width, initial_indent="  ",
                                      subsequent_indent="  ")]
        if options:
            lines.append("  options:")
            lines += [textwrap.fill(f"{k}: {v}", width, initial_indent="    ",
                                    subsequent_indent="        ") for k, v in options.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def handle(args: argparse.Namespace) -> int:
    console = Console()
    if args.what == "backbones":
        from cl.models.weights import available_backbones

        names = available_backbones(tags=args.tags)
        if args.format == "json":
            print(json.dumps([{"name": n} for n in names], indent=2))
        else:
            print("\n".join(names))
        return 0
    if args.what == "streams":
        import streams

        rows = [(e.name, *e.describe()) for e in streams.STREAMS.entries()]
    else:
        from strategies import loading

        kind = "plugin" if args.what == "plugins" else "strategy"
        names = (loading.available_plugins() if kind == "plugin"
                 else loading.available_strategies())
        rows = [(name, *loading.describe(name, kind)) for name in names]
    form = args.format or ("table" if console.is_terminal else "text")
    if form == "json":
        print(json.dumps([{"name": n, "description": d, "options": o} for n, d, o in rows],
                         indent=2))
        return 0
    if form == "text":
        sys.stdout.write(text_blocks(rows) + "\n")
        return 0
    table = Table(title=args.what)
    table.add_column("name", no_wrap=True)
    table.add_column("description")
    table.add_column("options")
    for name, description, options in rows:
        table.add_row(name, description, "\n".join(f"{k}: {v}" for k, v in options.items()))
    print_table(table, console)
    return 0
