"""``mod-x``: contrastive fine-tuning with Mod-X's off-diagonal information distillation.

Mod-X (Ni et al., "Continual Vision-Language Representation Learning with
Off-Diagonal Information", ICML 2023) keeps the model of the previous phase
frozen and, on every batch of the current phase, pulls the rows of the new
model's image-text similarity matrix towards the old model's, off-diagonal
entries included, where the old model matched the pair correctly
(:func:`strategies.imagetext.losses.modx_distillation_loss`). The loss of a step is::

    CLIP(I, T) + alpha * ( KL_rows(I Tᵀ, I_old T_oldᵀ) + KL_rows(T Iᵀ, T_old I_oldᵀ) ) / 2

As ZixuanNi/Mod-X ``ModX_Training/continue_train_model.py``: the old model is
the checkpoint the phase starts from (loaded into ``model_old`` before the phase),
so here a frozen copy of the model taken at the start of every trained task,
the first included (the first phase distils against the initial model, as
``modx_5phase.sh`` does from its COCO-trained start).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cl.core.strategy import Context
from cl.runtime import distributed
from strategies.imagetext.base import ContrastiveFinetune, full_precision
from strategies.imagetext.losses import modx_distillation_loss
from strategies.imagetext.options import ModXOptions

__all__ = ["ModX"]


class ModX(ContrastiveFinetune):
    """Contrastive fine-tuning plus Mod-X's selective off-diagonal distillation.

    Parameters
    ----------
    options : ModXOptions, optional
    **overrides
        Fields of :class:`~strategies.imagetext.options.ModXOptions` (``alpha``...).
    """

    label = "mod-x"
    options_class = ModXOptions

    def __init__(self, options: ModXOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        self._old: nn.Module | None = None

    def _begin_task(self, model: nn.Module, ctx: Context) -> None:
        self._old = self.frozen_copy(model)

    def _terms(self, model: nn.Module, images: torch.Tensor, tokens: torch.Tensor,
               image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = super()._terms(model, images, tokens, image, text, scale)
        with torch.no_grad():
            old_image = full_precision(self._old.encode_image(images, normalize=True))
            old_text = full_precision(self._old.encode_text(tokens, normalize=True))
        distill = modx_distillation_loss(image, text, old_image, old_text,
                                         rank=distributed.rank(), world_size=distributed.world_size())
        terms["distillation"] = self.options.alpha * distill
        return terms

    def _end_task(self, ctx: Context) -> None:
        self._old = None
