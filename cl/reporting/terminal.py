"""Terminal tables that never cut their content.

Rich fits a table to the console width, cutting cells it cannot wrap with
"…"; when the output is not a terminal (a pipe, a log file, CI) the console
width is 80 columns, so paths and task names were cut. :func:`print_table`
folds cells instead of cutting them and, off a terminal, widens the console to
the table's natural width.
"""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


def print_table(table: Table, console: Console | None = None) -> None:
    """Print ``table`` in full: folded cells on a terminal, natural width elsewhere."""
    console = console or Console()
    for column in table.columns:
        column.overflow = "fold"
    if not console.is_terminal:
        needed = Measurement.get(console, console.options.update_width(10**5), table).maximum
        console.width = max(console.width, needed)
    console.print(table)


__all__ = ["print_table"]
