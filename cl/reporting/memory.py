"""Memory-aligned comparison and the memory-agnostic measures AUC-A / AUC-L.

Zhou et al., "Deep Class-Incremental Learning: A Survey" (TPAMI 2024, memory-aligned and memory-agnostic evaluation;
code zhoudw-zdw/CIL_Survey @ 197fa86215a5b2e8fe7ce768654620f9a030cbb5) compare
methods at *equal memory*, memory counted as the bytes of the model plus the
exemplars, and summarise a method run at several memory budgets by the area
under its accuracy–memory curve: **AUC-A** for the average incremental accuracy,
**AUC-L** for the last accuracy.

How the survey's code counts (``utils/model2exemplar.py: get_infos``):
memory in MB = ``parameters · 4 / 1024 / 1024 + exemplars · image_bytes / 1024 / 1024``
with ``image_bytes`` = 32·32·3 (CIFAR-100) or 224·224·3 (ImageNet-100), one
byte per stored pixel channel. Its budgets are the points of the curve for a
single-backbone method (iCaRL): ResNet-32 with 2,000 / 3,634 / 4,900 / 6,165 /
7,431 exemplars on CIFAR-100, ResNet-18 with 2,000 / 3,136 / 4,969 / 5,779 /
7,924 / 8,574 on ImageNet-100 (``scripts/auc``, ``auc2exemplar``):
:data:`SURVEY_BUDGETS_MB`, computed with the code's rule (7.63 … 23.54 MB and
329.7 … 1273.5 MB; the ``auc2exemplar`` docstring rounds them, e.g. 16.0 for 16.12).

The repository computes no area itself (its scripts only run the budgets).
The integration rule here is the trapezoidal rule over the points sorted by
memory, accuracy as a fraction and memory in MB: this is what reproduces the
magnitudes of the survey's table (e.g. Replay, CIFAR-100: AUC-A 10.49 over a
15.9 MB span, i.e. a mean accuracy of 0.66). ``experiments/fidelity/cil.py``
checks the budgets against the survey's own ``get_infos`` and the area
against ``numpy.trapezoid``.

In our results, ``compute[t].memory_bytes`` is what a strategy carries
between tasks (statistics, adapters, exemplar features) and
``records[t].exemplars`` the exemplars it keeps; with ``image_bytes`` given,
each exemplar is also charged as a stored image, as the survey does.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MB = 1024 * 1024
SURVEY_IMAGE_BYTES: dict[str, int] = {"cifar100": 32 * 32 * 3, "imagenet100": 224 * 224 * 3}
SURVEY_PARAMETERS: dict[str, int] = {"cifar100": 463504, "imagenet100": 11176512}
SURVEY_EXEMPLARS: dict[str, tuple[int, ...]] = {
    "cifar100": (2000, 3634, 4900, 6165, 7431),
    "imagenet100": (2000, 3136, 4969, 5779, 7924, 8574),
}


def survey_memory_mb(parameters: int, exemplars: int, image_bytes: int) -> float:
    """Memory in MB as the survey's ``get_infos``: float32 parameters plus uint8 exemplar images."""
    return parameters * 4 / MB + exemplars * image_bytes / MB


SURVEY_BUDGETS_MB: dict[str, tuple[float, ...]] = {
    name: tuple(survey_memory_mb(SURVEY_PARAMETERS[name], n, SURVEY_IMAGE_BYTES[name])
                for n in counts)
    for name, counts in SURVEY_EXEMPLARS.items()}


def area_under_curve(memory_mb: Sequence[float], accuracy: Sequence[float]) -> float:
    """Trapezoidal area under accuracy (fraction) against memory (MB), points sorted by memory.

    ``Σ_i (m_{i+1} − m_i) · (a_i + a_{i+1}) / 2``.

    Raises
    ------
    ValueError
        Fewer than two points, lengths differ, or two points share a memory value.
    """
    if len(memory_mb) != len(accuracy):
        raise ValueError(f"got {len(memory_mb)} memory values for {len(accuracy)} accuracies.")
    if len(memory_mb) < 2:
        raise ValueError("an area under the accuracy-memory curve needs runs at two or more "
                         f"memory budgets; got {len(memory_mb)}.")
    pts = sorted(zip(memory_mb, accuracy, strict=True))
    if any(a[0] == b[0] for a, b in itertools.pairwise(pts)):
        raise ValueError(f"two runs have the same memory ({pts}); an area needs distinct budgets.")
    return float(sum((m1 - m0) * (a0 + a1) / 2
                     for (m0, a0), (m1, a1) in itertools.pairwise(pts)))


@dataclass(frozen=True)
class MemoryPoint:
    """One finished run placed on the accuracy–memory plane."""

    label: str
    method: str
    protocol: str
    memory_mb: float
    exemplars: int | None
    average_incremental_accuracy: float | None
    average_accuracy: float | None


def _point(results: dict[str, Any], label: str, image_bytes: int | None) -> MemoryPoint:
    done = int(results.get("completed_tasks", 0))
    compute = results.get("compute", [])[:done]
    records = results.get("records", [])[:done]
    memory = float(compute[-1].get("memory_bytes") or 0.0) if compute else 0.0
    exemplars = records[-1].get("exemplars") if records and isinstance(records[-1], dict) else None
    if exemplars is not None and image_bytes:
        memory += int(exemplars) * image_bytes
    config = results.get("config") or {}
    stream = config.get("stream") if isinstance(config.get("stream"), dict) else {}
    protocol = " ".join(str(x) for x in (results.get("stream"), results.get("backbone"),
                                         f"order={stream.get('class_order_seed', '?')}"))
    metrics = results.get("metrics", {})
    return MemoryPoint(label, str(results.get("strategy")), protocol, memory / MB,
                       None if exemplars is None else int(exemplars),
                       metrics.get("average_incremental_accuracy"), metrics.get("average_accuracy"))


def load_points(run_dirs: Sequence[str | os.PathLike[str]], *, image_bytes: int | None = None,
                allow_modified: bool = False) -> list[MemoryPoint]:
    """Finished runs below ``run_dirs`` as :class:`MemoryPoint` (unfinished runs are skipped)."""
    from cl.core.results import load_results
    from cl.reporting.runs import expand_run_dirs

    points = []
    for d in map(Path, run_dirs):
        if not d.is_dir():
            raise FileNotFoundError(f"{str(d)!r} is not a directory; pass run directories.")
        for p in expand_run_dirs(d):
            results = load_results(p, allow_modified=allow_modified)
            if results.get("status") == "completed":
                points.append(_point(results, p.name, image_bytes))
    return points


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def memory_table(points: Sequence[MemoryPoint]) -> str:
    """Markdown: runs at their memory, which methods keep exemplars, AUC-A / AUC-L per method.

    Methods are grouped by (strategy, protocol); a group with runs at two or
    more memory budgets gets its AUC-A and AUC-L (trapezoidal, accuracy as a
    fraction times MB, see the module docstring).
    """
    lines = ["| run | method | protocol | memory (MB) | exemplars | Avg (%) | Last (%) |",
             "|---|---|---|---:|---:|---:|---:|"]
    for p in sorted(points, key=lambda q: (q.protocol, q.memory_mb, q.method)):
        ex = "not recorded" if p.exemplars is None else str(p.exemplars)
        lines.append(f"| {p.label} | {p.method} | {p.protocol} | {p.memory_mb:.3f} | {ex} | "
                     f"{_pct(p.average_incremental_accuracy)} | {_pct(p.average_accuracy)} |")
    groups: dict[tuple[str, str], list[MemoryPoint]] = {}
    for p in points:
        groups.setdefault((p.method, p.protocol), []).append(p)
    lines += ["", "| method | protocol | keeps exemplars | budgets (MB) | AUC-A | AUC-L |",
              "|---|---|---|---|---:|---:|"]
    for (method, protocol), group in sorted(groups.items()):
        kept = {p.exemplars for p in group}
        keeps = ("not recorded" if kept == {None} else
                 "yes" if any(e for e in kept if e) else "no (statistics only)")
        budgets = ", ".join(f"{p.memory_mb:.3f}" for p in sorted(group, key=lambda q: q.memory_mb))
        auc_a = auc_l = "needs ≥ 2 budgets"
        if len({p.memory_mb for p in group}) >= 2 and len(group) == len({p.memory_mb for p in group}):
            mem = [p.memory_mb for p in group]
            if all(p.average_incremental_accuracy is not None for p in group):
                auc_a = f"{area_under_curve(mem, [p.average_incremental_accuracy for p in group]):.6g}"
            if all(p.average_accuracy is not None for p in group):
                auc_l = f"{area_under_curve(mem, [p.average_accuracy for p in group]):.6g}"
        lines.append(f"| {method} | {protocol} | {keeps} | {budgets} | {auc_a} | {auc_l} |")
    return "\n".join(lines) + "\n"


def memory_view(run_dirs: Sequence[str | os.PathLike[str]], *, image_bytes: int | None = None,
                allow_modified: bool = False) -> str:
    """``cl compare --memory``: :func:`memory_table` of the finished runs below ``run_dirs``."""
    points = load_points(run_dirs, image_bytes=image_bytes, allow_modified=allow_modified)
    if not points:
        raise ValueError("no finished run found below "
                         f"{', '.join(map(str, run_dirs))}; the memory view needs finished runs.")
    return memory_table(points)
