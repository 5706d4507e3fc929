"""``magmax``: sequential fine-tuning, evaluated through a maximum-magnitude merge of task vectors.

MagMax (Marczak et al., "MagMax: Leveraging Model Merging for Seamless Continual Learning",
ECCV 2024, §3; reference ``danielm1405/magmax`` @ 4f49f18fb30216d3a0dbe4220b469a3273e45475):

1. **Sequential fine-tuning** (§3, "sequential fine-tuning"): task t starts from the weights
   θ_{t−1} fine-tuned on task t − 1 (not from the merged model), trains the image tower
   with AdamW, linear warm-up then cosine rate, cross-entropy over the task's zero-shot
   text head and gradients clipped to norm 1 (``finetune_splitted.py``, ``--sequential-finetuning``;
   defaults lr 1e-5, weight decay 0.1, batch 128, warm-up 500, no label smoothing:
   ``src/args.py``).
2. **Task vectors** τ_t = θ_t − θ₀ against the zero-shot weights θ₀.
3. **Maximum-magnitude merge** (§3, Eq. 2): ``τ_MM[p] = τ_{t*}[p]``, ``t* = argmax_t |τ_t[p]|``
   over the tasks so far, then ``θ_MM = θ₀ + λ·τ_MM`` with λ = 0.5
   (``merge_splitted.py``: ``(merge_max_abs, [0.5])``). The model is evaluated with θ_MM
   after every task; the next task trains on from θ_t again.

The merge is incremental (one running τ_MM, see
:func:`~strategies.adaptation.task_vectors.max_magnitude_merge`), equal to the reference's
merge of the whole list. Deliberate deviations: T optimiser steps per task instead of
epochs; the text head is the first prompt template (the library's CLIP objective) where
the reference averages its dataset templates; only the trained towers' weights form the
task vectors (the reference's vectors of the frozen text tower are zero). Proof:
``docs/fidelity.md`` (MagMax); behaviour on the toy world: ``docs/adaptation.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from cl.core.strategy import Context, TaskData
from strategies.adaptation.finetune import CLIPFinetune
from strategies.adaptation.options import FinetuneOptions, check_number
from strategies.adaptation.task_vectors import (
    apply_task_vector,
    max_magnitude_merge,
    task_vector,
)


@dataclass(frozen=True, kw_only=True)
class MagMaxOptions(FinetuneOptions):
    """``magmax``: sequential fine-tuning of the image tower plus MagMax merging.

    Defaults are the reference's (``src/args.py``, ``finetune_splitted.py``,
    ``merge_splitted.py``).

    Attributes
    ----------
    coefficient : float
        λ of ``θ₀ + λ·τ_MM`` (0.5).
    max_grad_norm : float
        Gradients are clipped to this total norm before every step (1.0; 0 disables).
    """

    encoders: Literal["vision", "text", "both"] = "vision"
    lr: float = 1e-5
    batch_size: int = 128
    weight_decay: float = 0.1
    warmup: int = 500
    label_smoothing: float = 0.0
    coefficient: float = 0.5
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("coefficient", self.coefficient, low=-1e6, high=1e6)
        check_number("max_grad_norm", self.max_grad_norm)


class ClippedAdamW(torch.optim.AdamW):
    """AdamW that clips the total gradient norm of its parameters before every step.

    ``torch.nn.utils.clip_grad_norm_(params, max_norm)`` then AdamW's step, as the reference
    does between ``loss.backward()`` and ``optimizer.step()``; ``max_norm = 0`` clips nothing.
    """

    def __init__(self, params: Any, *, max_norm: float, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.max_norm = max_norm

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        if self.max_norm > 0:
            grads = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(grads, self.max_norm)
        return super().step(closure)


class MagMax(CLIPFinetune):
    """Sequential fine-tuning evaluated through the maximum-magnitude merge of its task vectors.

    Parameters
    ----------
    options : MagMaxOptions, optional
        Hyper-parameters (defaults: the reference's CIL scripts).
    **overrides
        Fields of the options to change.
    """

    label = "magmax"
    options_class = MagMaxOptions
    options: MagMaxOptions

    def __init__(self, options: MagMaxOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        self._zeroshot: dict[str, torch.Tensor] = {}
        self._sequential: dict[str, torch.Tensor] = {}
        self._merged: dict[str, torch.Tensor] = {}

    def _on_bind(self, model: nn.Module) -> None:
        # the backbone as given is θ₀ (also on resume: the runner binds the initial model)
        self._zeroshot = {k: p.detach().cpu().clone() for k, p in self.trained(model).items()}

    def _optimizer(self, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
        return ClippedAdamW(groups, lr=lr, betas=self.options.betas,
                            weight_decay=self.options.weight_decay,
                            max_norm=self.options.max_grad_norm)

    def _begin_task(self, model: nn.Module, ctx: Context) -> None:
        if self._sequential:  # train on from θ_{t−1}, not from the merged model
            self.write_parameters(model, self._sequential)

    def _end_task(self, model: nn.Module, data: TaskData | None, ctx: Context) -> None:
        self._sequential = {k: p.detach().cpu().clone() for k, p in self.trained(model).items()}
        tau = task_vector(self._zeroshot, self._sequential)
        self._merged = max_magnitude_merge([self._merged, tau] if self._merged else [tau])
        self._write_merged(model)

    def _write_merged(self, model: nn.Module) -> None:
        device = next(model.parameters()).device
        merged = apply_task_vector(self._zeroshot, self._merged, self.options.coefficient)
        self.write_parameters(model, {k: v.to(device) for k, v in merged.items()})

    def merged_vector(self) -> dict[str, torch.Tensor]:
        """τ_MM so far (CPU tensors; empty before the first task)."""
        return dict(self._merged)

    def sequential_weights(self) -> dict[str, torch.Tensor]:
        """θ_t, the sequentially fine-tuned weights the next task starts from (CPU tensors)."""
        return dict(self._sequential)

    # -- state ----------------------------------------------------------------------------------
    def _state(self, model: nn.Module) -> dict[str, Any]:
        return {"sequential": dict(self._sequential), "merged": dict(self._merged)}

    def _restore(self, model: nn.Module, state: dict[str, Any]) -> None:
        self._sequential = {k: torch.as_tensor(v) for k, v in state["sequential"].items()}
        self._merged = {k: torch.as_tensor(v) for k, v in state["merged"].items()}
        self._write_merged(model)

    def _reset(self) -> None:
        self._sequential, self._merged = {}, {}

    def memory_bytes(self) -> int:
        """θ₀, θ_t and τ_MM kept between tasks, in bytes."""
        return sum(v.numel() * v.element_size()
                   for kept in (self._zeroshot, self._sequential, self._merged)
                   for v in kept.values())


__all__ = ["ClippedAdamW", "MagMax", "MagMaxOptions"]
