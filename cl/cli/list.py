"""``cl list streams|strategies|backbones|plugins`` (reads sources; imports no torch)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from cl.reporting.terminal import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="list streams, strategies, backbones or plugins")
    p.add_argument("what", choices=["streams", "strategies", "backbones", "plugins"])
    p.add_argument("--tags", action="store_true",
                   help="backbones: also every open_clip MODEL:TAG (imports open_clip)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    console = Console()
    if args.what == "backbones":
        from cl.models.weights import available_backbones

        for name in available_backbones(tags=args.tags):
            console.print(name)
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
    table = Table(title=args.what)
    table.add_column("name", no_wrap=True)
    table.add_column("description")
    table.add_column("options")
    for name, description, options in rows:
        table.add_row(name, description, ", ".join(f"{k}: {v}" for k, v in options.items()))
    print_table(table, console)
    return 0
