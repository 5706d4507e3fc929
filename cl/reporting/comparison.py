"""What a comparison counts: finished runs, each identity once, split by protocol and grouped.

:func:`select` reads run directories (:func:`cl.reporting.runs.load_compared`) and
:func:`build` makes the :class:`Comparison` every view of ``cl compare`` renders (the
Markdown and CSV of :mod:`cl.reporting.compare`, the figure of
:mod:`cl.reporting.compare_plot`, and any further section):

1. each run identity counted once (:func:`cl.reporting.identity.deduplicate`), the
   duplicates kept aside to be named;
2. only finished runs aggregated; the others kept aside with their state;
3. runs split by protocol (:func:`cl.reporting.protocol.split_by_protocol`) and, in
   each protocol, grouped by everything but the seed and the keys of ``over``
   (:func:`cl.reporting.aggregate.group_runs`), ``over`` checked by
   :func:`cl.reporting.protocol.check_over`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from cl.reporting.aggregate import Group, group_runs
from cl.reporting.identity import Duplicate, deduplicate
from cl.reporting.protocol import Protocol, check_over, split_by_protocol
from cl.reporting.runs import RunSummary, Unfinished, load_compared


@dataclass
class Comparison:
    """What a comparison counts, and what it leaves out.

    Attributes
    ----------
    runs : list of RunSummary
        Finished runs, each identity once, in the order given.
    tables : list of (Protocol, list of Group)
        One per protocol: its rows.
    unfinished : list of Unfinished
        Runs listed apart (not aggregated).
    duplicates : list of Duplicate
        Runs left out as another run given.
    over : tuple of str
        Keys aggregated over (the seed first).
    """

    runs: list[RunSummary]
    tables: list[tuple[Protocol, list[Group]]]
    unfinished: list[Unfinished]
    duplicates: list[Duplicate]
    over: tuple[str, ...]


def build(runs: Sequence[RunSummary], unfinished: Sequence[Unfinished] = (),
          over: Sequence[str] = ("seed",)) -> Comparison:
    """The :class:`Comparison` of loaded runs: finished runs deduplicated, split by protocol
    and grouped (unfinished ones among ``runs`` are moved to ``unfinished``).

    Raises
    ------
    ValueError
        An ``over`` key no run has, or a key of the protocol (:func:`check_over`).
    """
    over = tuple(dict.fromkeys(("seed", *over)))
    finished = [r for r in runs if r.finished]
    left: dict[str, Unfinished] = {}  # one line per directory, however often it is reached
    for u in [*unfinished, *(Unfinished(r.label, r.path, r.status, r.completed, r.n_tasks, None, r)
                             for r in runs if not r.finished)]:
        left.setdefault(str(u.path.resolve()), u)
    check_over([k for k in over if k != "seed"],
               [*finished, *(u.run for u in left.values() if u.run)])
    kept, duplicates = deduplicate(finished)
    tables = [(p, group_runs(members, over)) for p, members in split_by_protocol(kept)]
    return Comparison(kept, tables, list(left.values()), duplicates, over)


def select(run_dirs: Sequence[str | os.PathLike[str]], *, over: Sequence[str] = ("seed",),
           allow_modified: bool = False) -> Comparison:
    """Load the runs below ``run_dirs`` (:func:`cl.reporting.runs.load_compared`) and
    :func:`build` their comparison."""
    finished, unfinished = load_compared(run_dirs, allow_modified=allow_modified)
    return build(finished, unfinished, over)


def same_results(group: Group) -> bool:
    """Whether the group has several runs and they all gave the same score matrix."""
    matrices = [r.matrix for r in group.runs]
    return len(matrices) > 1 and matrices[0] is not None and all(m == matrices[0] for m in matrices)


__all__ = ["Comparison", "build", "same_results", "select"]
