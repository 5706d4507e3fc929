"""Runs grouped by everything but the seed, with mean ± standard deviation per metric.

A paper's table cell is a method on a stream over several seeds. Two runs are in
one group when their resolved settings (:func:`cl.reporting.protocol.settings`:
defaults filled in) agree on everything that determines results except ``seed``:
stream and its options, strategy and its options, backbone, plugins, protocol,
batch size (the run config's identity, as a resume checks it). More keys can be
aggregated over (``over``, e.g. ``strategy.lr``; never a key of the protocol,
:func:`cl.reporting.protocol.check_over`). Runs written without a config (Python
API) are grouped by stream, strategy, backbone and scenario.

Per metric the group shows the mean over its runs and the *sample* standard
deviation ``s = sqrt( Σ (x_i − x̄)² / (n − 1) )`` (``numpy.std(ddof=1)``;
undefined for n = 1), with ``n`` the number of runs that have the metric.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cl.reporting.identity import IGNORED

if TYPE_CHECKING:
    from cl.reporting.compare import RunSummary



def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (``ddof=1``; None for fewer than 2) and count of the
    values that are not None."""
    present = np.array([v for v in values if v is not None], dtype=float)
    if present.size == 0:
        return None, None, 0
    std = float(np.std(present, ddof=1)) if present.size > 1 else None
    return float(present.mean()), std, int(present.size)


def group_settings(run: RunSummary, over: Sequence[str] = ("seed",)) -> dict[str, Any]:
    """The resolved settings (dotted keys) that define ``run``'s group: its config without
    :data:`IGNORED` keys and without the keys aggregated ``over`` (the seed always)."""
    from cl.reporting.protocol import settings

    return {k: v for k, v in settings(run).items() if k not in over and k != "seed"}


@dataclass
class Group:
    """Runs that differ only by seed.

    Attributes
    ----------
    settings : dict
        Flattened settings shared by the runs (:func:`group_settings`).
    runs : list of RunSummary
        In the order given.
    """

    settings: dict[str, Any]
    runs: list[RunSummary] = field(default_factory=list)

    @property
    def first(self) -> RunSummary:
        return self.runs[0]

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def options(self) -> dict[str, Any]:
        """The strategy options the group's config sets (``strategy.X`` settings; options left
        at their default are not shown, nor those aggregated over)."""
        table = (self.first.config or {}).get("strategy")
        explicit = set(table) if isinstance(table, dict) else set()
        return {k.split(".", 1)[1]: v for k, v in self.settings.items()
                if k.startswith("strategy.") and k != "strategy.name"
                and k.split(".", 1)[1] in explicit}

    def metric(self, key: str) -> tuple[float | None, float | None, int]:
        """:func:`mean_std` of metric ``key`` over the runs."""
        return mean_std([r.metrics.get(key) for r in self.runs])

    def value(self, attribute: str) -> float | None:
        """Mean of a per-run number (``train_seconds``, ``train_flops``, ``memory_bytes``)."""
        return mean_std([getattr(r, attribute) for r in self.runs])[0]


def group_runs(runs: Sequence[RunSummary], over: Sequence[str] = ("seed",)) -> list[Group]:
    """Runs grouped by :func:`group_settings` (aggregating ``over`` those keys), groups in order
    of first appearance."""
    groups: dict[str, Group] = {}
    for run in runs:
        settings = group_settings(run, over)
        key = json.dumps(settings, sort_keys=True, default=str)
        groups.setdefault(key, Group(settings)).runs.append(run)
    return list(groups.values())


def differing(groups: Sequence[Group], exclude_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Setting keys whose values differ between groups (shown so two rows can be told apart)."""
    keys = sorted({k for g in groups for k in g.settings})
    out = []
    for key in keys:
        if key.startswith(exclude_prefixes):
            continue
        values = {json.dumps(g.settings.get(key), sort_keys=True, default=str) for g in groups}
        if len(values) > 1:
            out.append(key)
    return out


def format_value(value: Any) -> str:
    """A setting as a short string (``0.3``, ``[0.9, 0.999]``, ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


__all__ = ["IGNORED", "Group", "differing", "format_value", "group_runs", "group_settings",
           "mean_std"]
