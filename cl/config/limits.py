"""Size limits: counts that multiply a run's (or a sweep's) work, checked before work starts.

A typo such as ``stream.n_train=1000000000`` or ``protocol.hp_trials=1000000000``
would otherwise run until the machine kills it. Above these limits ``cl run``
and ``cl sweep`` refuse with the estimate and the override (``--allow-large``,
or ``allow_large = true`` in the config); the limits are documented in
docs/workflow.md ("Size limits").
"""

from __future__ import annotations

from typing import Any

#: Runs in one sweep (the grid size times the ``[[sweep.runs]]`` entries).
MAX_RUNS = 10_000
#: Hyper-parameter trials per task (``protocol.hp_trials``; each one trains the task again).
MAX_HP_TRIALS = 1_000
#: Images per class of a generated or sampled stream (``stream.n_train``, ``stream.n_test``...).
MAX_PER_CLASS = 100_000
#: Stream options that count images per class.
PER_CLASS_OPTIONS: tuple[str, ...] = ("n_train", "n_test", "n_shots", "n_per_class")
OVERRIDE = "pass --allow-large (or set allow_large = true in the config) to run it anyway"


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def oversized(config: Any) -> list[ValueError]:
    """One error per count of ``config`` (a :class:`~cl.config.RunConfig`) above its limit."""
    errors = []
    for key in PER_CLASS_OPTIONS:
        n = _count(config.stream_options.get(key))
        if n is not None and n > MAX_PER_CLASS:
            errors.append(ValueError(
                f"stream.{key}={n} asks for {n:,} images per class in every task (limit "
                f"{MAX_PER_CLASS:,}, docs/workflow.md 'Size limits'); lower it, or {OVERRIDE}."))
    trials = _count(config.protocol.get("hp_trials"))
    if trials is not None and trials > MAX_HP_TRIALS:
        errors.append(ValueError(
            f"protocol.hp_trials={trials} trains every task {trials:,} more times (limit "
            f"{MAX_HP_TRIALS:,}, docs/workflow.md 'Size limits'); lower it, or {OVERRIDE}."))
    return errors


def check_runs(n_runs: int, what: str, allow_large: bool) -> None:
    """Refuse a sweep of more than :data:`MAX_RUNS` runs unless ``allow_large``."""
    if n_runs > MAX_RUNS and not allow_large:
        raise ValueError(f"{what} expands to {n_runs:,} runs (limit {MAX_RUNS:,}, "
                         f"docs/workflow.md 'Size limits'); shrink the grid, or {OVERRIDE}.")


__all__ = ["MAX_HP_TRIALS", "MAX_PER_CLASS", "MAX_RUNS", "PER_CLASS_OPTIONS", "check_runs",
           "oversized"]
