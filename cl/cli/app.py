"""The ``cl`` command line entry point.

Subcommands live in :mod:`cl.cli`, one module each (listed in :data:`COMMANDS`):
a module exposes ``register(subparsers)`` that adds its parser and sets
``func`` to a handler ``(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

import cl
from cl.errors import USER_ERRORS

#: Subcommand modules of :mod:`cl.cli`, in help order.
COMMANDS: tuple[str, ...] = ("run", "sweep", "report", "compare", "list", "streams", "cache",
                             "export")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="cl", description="Continual learning on frozen vision-language models.")
    parser.add_argument("--version", action="version", version=f"cl {cl.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (and show tracebacks)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cl.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cl`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if args.verbose:
            raise
        print(f"cl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
