"""Continual-learning metrics as pure functions of the accuracy matrix.

Conventions (``design.md``): ``A`` has shape (T, T); ``A[t, j]`` is top-1
accuracy, a fraction in [0, 1], on task ``j``'s test split after training
through task ``t`` (0-based). ``z`` has shape (T,): accuracy of each task
before any training (the zero-shot row). Averages are macro (over tasks).

Missing values
--------------
An entry that was not evaluated is ``NaN`` and is left out of every mean
(``nanmean``). A metric with no defined term — for example forgetting of a
1-task stream, which has no earlier task — is ``NaN``, never 0: it is
undefined, not "no forgetting". JSON output writes ``NaN`` as ``null``.

Any score
---------
Every function here works on any score matrix with values in [0, 1], not only
accuracy: an image-text run applies :func:`summarize` to each of its retrieval
matrices (``results.json`` ``score_metrics``). The retrieval scores themselves
(:func:`recall_at_k`, :func:`image_text_recall`, :func:`multimodal_map_at_k`)
are defined in :mod:`cl.core.retrieval` and re-exported here.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from cl.core.retrieval import image_text_recall, multimodal_map_at_k, recall_at_k

__all__ = [
    "SCENARIO_EXCLUDED",
    "average_accuracy",
    "average_incremental_accuracy",
    "backward_transfer",
    "defined_metrics",
    "forgetting",
    "forgetting_after_training",
    "forward_transfer",
    "image_text_recall",
    "mtil_summary",
    "multimodal_map_at_k",
    "nevis_average_error",
    "nevis_error_curve",
    "recall_at_k",
    "summarize",
]


#: metrics a scenario leaves undefined: MTIL's Transfer/Average/Last (ZSCL, Sec. 4.1) score
#: the upper triangle of a task-incremental (or task-agnostic, X-TAIL) matrix; in a
#: class-incremental stream a task's classes are not in the label space before it is
#: learned, so its upper triangle is 0 by construction for any non-zero-shot strategy.
SCENARIO_EXCLUDED: dict[str, frozenset[str]] = {
    "class-incremental": frozenset({"mtil_transfer", "mtil_average", "mtil_last"}),
}


def defined_metrics(scenario: str | None, names: list[str] | tuple[str, ...]) -> list[str]:
    """The metric ``names`` defined for ``scenario`` (see :data:`SCENARIO_EXCLUDED`), in order."""
    excluded = SCENARIO_EXCLUDED.get(scenario or "", frozenset())
    return [n for n in names if n not in excluded]


def _matrix(A: ArrayLike) -> np.ndarray:
    M = np.asarray(A, dtype=float)
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square (T, T) with T >= 1, got shape {M.shape}.")
    finite = M[~np.isnan(M)]
    if np.any((finite < 0) | (finite > 1)):
        raise ValueError("accuracies must be fractions in [0, 1] (not percent).")
    return M


def _nanmean(values: ArrayLike) -> float:
    v = np.asarray(values, dtype=float)
    if v.size == 0 or np.all(np.isnan(v)):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(v))


def average_accuracy(A: ArrayLike) -> float:
    """Final average accuracy, ``mean_j A[T-1, j]`` (MTIL "Last").

    Parameters
    ----------
    A : array-like, shape (T, T)

    Returns
    -------
    float
    """
    M = _matrix(A)
    return _nanmean(M[-1])


def average_incremental_accuracy(A: ArrayLike) -> float:
    """``mean_t ( mean_{j<=t} A[t, j] )``: Rebuffi et al. 2017 (iCaRL), Sec. 4.

    The mean over training steps of the average accuracy on the tasks seen so far.
    """
    M = _matrix(A)
    return _nanmean([_nanmean(M[t, : t + 1]) for t in range(M.shape[0])])


def forgetting(A: ArrayLike, *, rows: Literal["learned", "all"] = "learned") -> float:
    """Average forgetting, Chaudhry et al. 2018 (RWalk), Eq. 5–6.

    ``mean_{j<T-1} ( max_{j<=t<=T-2} A[t, j] − A[T-1, j] )``: the drop from the
    best accuracy a task ever had (after it was learned, before the last task)
    to its final accuracy. ``NaN`` for T == 1.

    Rows before task ``j`` was trained (``t < j``: zero-shot or transfer accuracy) are not
    part of the maximum, as in continuum's ``forgetting``; A-GEM's code (``compute_fgt``,
    facebookresearch/agem) takes the maximum over every row ``t <= T-2`` and gives a larger
    value whenever a task scored higher before it was learned (see ``docs/fidelity.md``).
    ``rows="all"`` gives A-GEM's reading.

    Parameters
    ----------
    A : array_like, shape (T, T)
    rows : {"learned", "all"}
        Rows that compete for the maximum: from the task's own row on (default), or all.
    """
    if rows not in ("learned", "all"):
        raise ValueError(f"forgetting rows must be 'learned' or 'all', got {rows!r}.")
    M = _matrix(A)
    T = M.shape[0]
    terms = []
    for j in range(T - 1):
        history = M[j if rows == "learned" else 0 : T - 1, j]
        if np.all(np.isnan(history)) or np.isnan(M[T - 1, j]):
            continue
        terms.append(np.nanmax(history) - M[T - 1, j])
    return _nanmean(terms)


def forgetting_after_training(A: ArrayLike) -> float:
    """``mean_{j<T-1} ( A[j, j] − A[T-1, j] )``: forgetting relative to the accuracy
    right after training on the task, as avalanche's ``ExperienceForgetting`` /
    ``StreamForgetting`` report it. ``NaN`` for T == 1.
    """
    M = _matrix(A)
    T = M.shape[0]
    return _nanmean([M[j, j] - M[T - 1, j] for j in range(T - 1)])


def backward_transfer(A: ArrayLike) -> float:
    """Backward transfer, Lopez-Paz & Ranzato 2017 (GEM), Eq. 3 (with the sum over the
    first T-1 tasks, as avalanche's ``StreamBWT`` does).

    ``mean_{j<T-1} ( A[T-1, j] − A[j, j] )`` = ``−forgetting_after_training(A)``.
    ``NaN`` for T == 1.
    """
    M = _matrix(A)
    T = M.shape[0]
    return _nanmean([M[T - 1, j] - M[j, j] for j in range(T - 1)])


def forward_transfer(A: ArrayLike, z: ArrayLike | None) -> float:
    """Forward transfer, Lopez-Paz & Ranzato 2017 (GEM), Eq. 4.

    ``mean_{j>=1} ( A[j-1, j] − z[j] )`` with ``z`` the accuracy before any
    training (the zero-shot row). ``NaN`` for T == 1 or when ``z`` is None.
    """
    M = _matrix(A)
    if z is None:
        return float("nan")
    zz = np.asarray(z, dtype=float)
    if zz.shape != (M.shape[0],):
        raise ValueError(f"zero-shot vector must have shape ({M.shape[0]},), got {zz.shape}.")
    return _nanmean([M[j - 1, j] - zz[j] for j in range(1, M.shape[0])])


def mtil_summary(A: ArrayLike) -> dict[str, float]:
    """MTIL's Transfer / Average / Last, Zheng et al. 2023 (ZSCL), Sec. 4.1.

    - ``transfer`` = ``mean_{j>=1} ( mean_{t<j} A[t, j] )``: accuracy on tasks not
      yet trained (upper triangle), first averaged per task; the first task has
      no such entry and is skipped. ``NaN`` for T == 1.
    - ``average`` = ``mean_j ( mean_t A[t, j] )``: every entry, per task first.
    - ``last`` = ``mean_j A[T-1, j]``.
    """
    M = _matrix(A)
    T = M.shape[0]
    return {
        "transfer": _nanmean([_nanmean(M[:j, j]) for j in range(1, T)]),
        "average": _nanmean([_nanmean(M[:, j]) for j in range(T)]),
        "last": _nanmean(M[-1]),
    }


def nevis_average_error(A: ArrayLike) -> float:
    """NEVIS'22 average error, Bornschein et al. 2023, Sec. 3:
    ``mean_j (1 − A[j, j])``, each task scored right after it was learned.
    """
    M = _matrix(A)
    return _nanmean(1.0 - np.diag(M))


def nevis_error_curve(
    A: ArrayLike, compute: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """NEVIS'22 error-vs-compute curve.

    Parameters
    ----------
    A : array-like, shape (T, T)
    compute : array-like, shape (T,)
        Compute spent on each task (FLOPs or seconds).

    Returns
    -------
    cumulative_compute : np.ndarray, shape (T,)
        ``sum_{i<=t} compute[i]``.
    running_error : np.ndarray, shape (T,)
        ``mean_{j<=t} (1 − A[j, j])``: the average error after each task.
    """
    M = _matrix(A)
    c = np.asarray(compute, dtype=float)
    if c.shape != (M.shape[0],):
        raise ValueError(f"compute must have shape ({M.shape[0]},), got {c.shape}.")
    err = 1.0 - np.diag(M)
    running = np.array([_nanmean(err[: t + 1]) for t in range(M.shape[0])])
    return np.cumsum(c), running


def summarize(A: ArrayLike, z: ArrayLike | None = None) -> dict[str, float]:
    """Every metric of this module in one dict (keys as the function names;
    MTIL's three under ``mtil_transfer``, ``mtil_average``, ``mtil_last``).
    """
    M = _matrix(A)
    mtil = mtil_summary(M)
    return {
        "average_accuracy": average_accuracy(M),
        "average_incremental_accuracy": average_incremental_accuracy(M),
        "forgetting": forgetting(M),
        "forgetting_after_training": forgetting_after_training(M),
        "backward_transfer": backward_transfer(M),
        "forward_transfer": forward_transfer(M, z),
        "mtil_transfer": mtil["transfer"],
        "mtil_average": mtil["average"],
        "mtil_last": mtil["last"],
        "nevis_average_error": nevis_average_error(M),
    }
