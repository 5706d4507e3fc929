"""Task vectors and their maximum-magnitude merge (MagMax).

* :func:`task_vector` — ``τ = θ_ft − θ₀`` (Ilharco et al., ICLR 2023, "Editing models with
  task arithmetic", Eq. 1), for every floating-point weight.
* :func:`max_magnitude_merge` — MagMax (Marczak et al., ECCV 2024, §3, Eq. 2): per
  parameter p, the entry of the task vector with the largest ``|τ_t[p]|`` over tasks t.
  Ties go to the later task, as the reference's ``merge_max_abs``
  (``danielm1405/magmax`` @ 4f49f18, ``src/merging/task_vectors.py``) folds the vectors
  left to right with ``where(|τ_t| >= |acc|, τ_t, acc)``; the fold is associative in that
  tie rule, so merging incrementally (one task at a time) gives the same tensor as merging
  the whole list.
* :func:`apply_task_vector` — ``θ = θ₀ + λ·τ`` (the reference's ``TaskVector.apply_to``;
  MagMax uses λ = 0.5).

All act on ``{name: tensor}`` mappings of floating-point weights (e.g. a model's
``named_parameters``), returning new tensors, in the reference's order of operations so the
results match it to the last bit (``docs/fidelity.md``, MagMax).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from strategies.adaptation.weight_ensemble import _check_pair

Weights = Mapping[str, torch.Tensor]


def task_vector(pretrained: Weights, finetuned: Weights) -> dict[str, torch.Tensor]:
    """``τ = θ_ft − θ₀`` per name (same names and shapes; floating point only).

    Parameters
    ----------
    pretrained : {name: tensor} θ₀
    finetuned : {name: tensor} θ_ft
    """
    _check_pair(pretrained, finetuned)
    return {name: finetuned[name] - pretrained[name] for name in pretrained}


def max_magnitude_merge(vectors: Sequence[Weights]) -> dict[str, torch.Tensor]:
    """MagMax merge: per entry, the task vector value of largest magnitude (later task on ties).

    Parameters
    ----------
    vectors : sequence of {name: tensor}
        Task vectors τ₁ … τ_T, oldest first, same names and shapes.

    Returns
    -------
    dict of tensors
        ``τ_MagMax[p] = τ_{t*}[p]`` with ``t* = max argmax_t |τ_t[p]|``.
    """
    if not vectors:
        raise ValueError("max_magnitude_merge needs at least one task vector, got none.")
    merged = dict(vectors[0])
    for vector in vectors[1:]:
        _check_pair(merged, vector)
        merged = {name: torch.where(vector[name].abs() >= merged[name].abs(), vector[name],
                                    merged[name]) for name in merged}
    return merged


def apply_task_vector(pretrained: Weights, vector: Weights, coefficient: float
                      ) -> dict[str, torch.Tensor]:
    """``θ₀ + λ·τ`` per name (the reference's ``TaskVector.apply_to``).

    Parameters
    ----------
    pretrained : {name: tensor} θ₀
    vector : {name: tensor} τ, same names and shapes
    coefficient : float
        λ (``scaling_coef``; 0.5 in MagMax's runs). Any finite number.
    """
    if not isinstance(coefficient, (int, float)) or isinstance(coefficient, bool) \
            or not torch.isfinite(torch.tensor(float(coefficient))):
        raise ValueError(f"coefficient must be a finite number, got {coefficient!r}.")
    _check_pair(pretrained, vector)
    return {name: pretrained[name] + coefficient * vector[name] for name in pretrained}


__all__ = ["apply_task_vector", "max_magnitude_merge", "task_vector"]
