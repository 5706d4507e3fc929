"""Shared machinery of the strategies that adapt open_clip in place and merge after each task.

:class:`MergedAdapterStrategy` is the merge-specific part of the adapting-strategy loop
(:class:`~strategies.adaptation.base.AdaptingStrategy`) that every such strategy shares
(CoDyRA, Lu et al. arXiv 2412.01004, training protocol): place adapters on the
chosen linears, train them for a fixed number of iterations on the CLIP
image→text cross-entropy with AdamW and a cosine schedule, fold them into the
frozen weights after the task, and predict with plain CLIP. Subclasses say how
adapters are built, stepped and merged.

State and export
----------------
:meth:`~MergedAdapterStrategy.state_dict` holds the *current values* of every base
weight merging changes (attention ``in_proj_weight`` / ``out_proj.weight``, MLP
``c_fc`` / ``c_proj`` weights of the adapted towers), so a checkpoint restores the
merged model exactly (binding and resume: :mod:`strategies.adaptation.base`).
``cl export`` relies on this: rebuild the backbone from the run config,
``load_state_dict``, ``attach``, save.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from cl.core.strategy import Context, TaskData
from strategies.adaptation.base import AdaptingStrategy
from strategies.adaptation.clip_objective import clip_loss, prompts
from strategies.adaptation.schedule import cosine_factor
from strategies.lora.config import LoraOptions
from strategies.lora.placement import (
    adapted_parameters,
    check_model,
    prepare,
    restore_attention,
    towers_of,
)


class MergedAdapterStrategy(AdaptingStrategy):
    """Base class: adapters trained per task on images, merged into open_clip after it.

    Parameters
    ----------
    options : LoraOptions
        The validated hyper-parameters (:class:`~strategies.lora.config.LoraOptions`),
        kept as ``self.options``.
    """

    label = "adapter"
    options: LoraOptions
    searchable: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "lr": ("log-uniform", 1e-4, 1e-1), "label_smoothing": ("uniform", 0.0, 0.3)}

    def __init__(self, options: LoraOptions) -> None:
        super().__init__(options)
        self._ranks: dict[str, int] = {}

    # -- subclass hooks ----------------------------------------------------------------
    def _inject(
        self, model: nn.Module, names: list[str], generator: torch.Generator
    ) -> list[nn.Parameter]:
        """Place fresh adapters on modules ``names``; return their trainable parameters."""
        raise NotImplementedError

    def _kept_ranks(self) -> dict[str, int]:
        """{module name: rank that merging keeps}."""
        raise NotImplementedError

    def _delta_norms(self) -> dict[str, float]:
        """{module name: ‖ΔW‖_F} of the current adapters."""
        raise NotImplementedError

    def _unload(self, model: nn.Module, merge: bool) -> None:
        """Replace adapted modules by their base linears, merging ΔW first when ``merge``."""
        raise NotImplementedError

    # -- the adapting-strategy hooks -----------------------------------------------------
    def _check_backbone(self, backbone: Any, model: nn.Module) -> None:
        if "text" in towers_of(self.options.encoders) and not getattr(backbone, "has_text", False):
            raise ValueError(
                f"{self.label} encoders={self.options.encoders!r} adapts the text tower, but backbone "
                f"{backbone.name!r} has no text tower; use encoders='vision'."
            )
        check_model(model, self.options.encoders)

    def _param_groups(self, model: nn.Module, ctx: Context) -> list[dict[str, Any]]:
        names = prepare(model, self.options.encoders, self.options.targets)
        check_rank(self.label, self.options.rank, model, names)
        return [{"params": self._inject(model, names, ctx.generator)}]

    def _trains_text(self) -> bool:
        return "text" in towers_of(self.options.encoders)

    def _task_loss(self, model: nn.Module, image: torch.Tensor, text: torch.Tensor,
                   target: torch.Tensor) -> torch.Tensor:
        return clip_loss(image, text, target, model.logit_scale.exp(),  # fp32, outside autocast
                         text_to_image=self.options.text_to_image,
                         label_smoothing=self.options.label_smoothing)

    def _abort(self, model: nn.Module) -> None:
        self._unload(model, merge=False)  # back to the model of the previous task
        restore_attention(model)

    def _end_task(self, model: nn.Module, data: TaskData | None, ctx: Context) -> None:
        """Fold the adapters into the weights; record ranks and update norms."""
        norms = self._delta_norms()
        self._ranks = self._kept_ranks()
        self._unload(model, merge=True)
        restore_attention(model)
        ctx.record("effective_ranks", dict(self._ranks))
        ctx.record("allocated_rank", self.options.rank)
        ctx.record("update_frobenius_norms", norms)
        ctx.record("update_frobenius_norm", math.sqrt(sum(v * v for v in norms.values())))

    def _state(self, model: nn.Module) -> dict[str, Any]:
        params = dict(model.named_parameters())
        weights = {k: params[k].detach().cpu().clone()
                   for k in adapted_parameters(model, self.options.encoders, self.options.targets)}
        return {"weights": weights, "effective_ranks": dict(self._ranks)}

    def _restore(self, model: nn.Module, state: dict[str, Any]) -> None:
        self.write_parameters(model, {k: torch.as_tensor(v) for k, v in state["weights"].items()})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._ranks = {k: int(v) for k, v in state["effective_ranks"].items()} if state else {}
        super().load_state_dict(state)

    # -- reporting -------------------------------------------------------------------------
    def effective_ranks(self) -> dict[str, int]:
        """{module name: rank kept} of the last merged task (empty before any)."""
        return dict(self._ranks)


__all__ = ["MergedAdapterStrategy", "clip_loss", "cosine_factor", "prompts"]


def check_rank(label: str, rank: int, model: nn.Module, names: list[str]) -> None:
    """Refuse a LoRA ``rank`` above the smallest width (min of in and out features) of the
    modules ``names``: ``B A`` of rank r on a ``d``-wide layer has rank at most ``d``."""
    modules = dict(model.named_modules())
    widths = {n: min(m.in_features, m.out_features) for n in names
              if (m := modules.get(n)) is not None and hasattr(m, "in_features")}
    if widths:
        name, width = min(widths.items(), key=lambda kv: kv[1])
        if rank > width:
            raise ValueError(f"{label} option 'rank' ({rank}) is larger than the width of the "
                             f"adapted layer {name!r} ({width}); an update of that layer has "
                             f"rank at most {width}. Set strategy.rank <= {width}.")
