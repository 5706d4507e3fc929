"""Zero-shot CLIP: the frozen model's own text head, no training (the reference row)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cl.core.strategy import Context, Strategy, TaskData
from cl.models.prompts import zero_shot_head
from streams.core import LabelSpace


class ZeroShotStrategy(Strategy):
    """Zero-shot CLIP classification (Radford et al. 2021, §3.1.4).

    Logits over the label space's classes are ``s · x̂ · Wᵀ`` where ``x̂`` is the
    L2-normalised image feature (N, D) and ``W`` (C, D) the zero-shot head built
    from each class's own templates (:func:`cl.models.prompts.zero_shot_head`,
    template-averaged and re-normalised like ``open_clip.build_zero_shot_classifier``).
    Training tasks changes nothing; every row of the accuracy matrix equals the
    zero-shot row.

    Parameters
    ----------
    logit_scale : float
        Temperature ``s`` (CLIP's learned value is clipped at 100). It only
        scales logits: accuracy does not depend on it.
    """

    inputs = "features"
    needs_text = True

    def __init__(self, *, logit_scale: float = 100.0) -> None:
        if not logit_scale > 0:
            raise ValueError(f"logit_scale must be positive, got {logit_scale}.")
        self.logit_scale = float(logit_scale)

    def train_task(self, data: TaskData, ctx: Context) -> None:
        """Nothing to learn: zero-shot CLIP is training-free."""

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        """Logits (N, C) of features ``inputs`` (N, D) over ``label_space``."""
        if not getattr(ctx.backbone, "has_text", False):
            raise ValueError(
                f"strategy 'zeroshot' needs a text tower, but backbone {ctx.backbone.name!r} has "
                "none; use a VLM backbone such as 'ViT-B-16:openai' or 'cl-tiny-vit'."
            )
        head = zero_shot_head(ctx.backbone, label_space.class_names, label_space.templates)
        if inputs.ndim != 2 or inputs.shape[1] != head.shape[1]:
            raise ValueError(
                f"zeroshot expects features of shape (N, {head.shape[1]}), got "
                f"{tuple(inputs.shape)}; it works on backbone features, not images."
            )
        x = F.normalize(inputs.float(), dim=-1)
        return self.logit_scale * x @ head.to(x.device).T
