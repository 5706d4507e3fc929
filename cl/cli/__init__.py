"""The ``cl`` command line: :mod:`cl.cli.app` is the entry point; one module per subcommand.

Each subcommand module exposes ``register(subparsers)``, which only declares
arguments; heavy libraries (torch, open_clip) are imported inside the handlers,
so ``cl --help`` and ``cl list`` start fast.
"""

from cl.cli.app import main

__all__ = ["main"]
