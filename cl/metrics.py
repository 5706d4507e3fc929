"""Continual-learning metrics: ``from cl.metrics import average_accuracy, recall_at_k``.

The public home of the metric functions (``cl.metrics`` is also reachable as an attribute
of ``cl``, imported on first use): pure functions of a score matrix, defined in
:mod:`cl.core.metrics` (accuracy-matrix metrics, with each definition's source) and
:mod:`cl.core.retrieval` (retrieval scores: recall@K, mAP@K). Imports numpy only, no torch.
"""

from __future__ import annotations

from cl.core.metrics import (
    SCENARIO_EXCLUDED,
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    defined_metrics,
    forgetting,
    forgetting_after_training,
    forward_transfer,
    image_text_recall,
    mtil_summary,
    multimodal_map_at_k,
    nevis_average_error,
    nevis_error_curve,
    recall_at_k,
    summarize,
)

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
