"""``coda-prompt``: CODA-Prompt (Smith et al., CVPR 2023; ``GT-RIPL/CODA-Prompt`` @ 6417d4f).

Every block of ``layers`` (0–4) gets a prefix assembled from prompt components weighted
by the frozen query's attended cosine similarity with their keys
(:mod:`strategies.prompts.coda`); task t trains its own ``pool_size // T`` components,
initialised by Gram–Schmidt against the earlier ones, with the earlier ones frozen. The
classifier reads the prompted [CLS]. Loss: cross-entropy with the old-class logits
masked, plus ``ortho_mu`` times the orthogonality penalty (eq. 6; 0 in the reference's
scripts). Optimiser and schedule: Adam, the reference's per-epoch
``cos(99π·e / (200·(K−1)))``. Rehearsal-free; the backbone stays frozen.

Deviations from the reference, on purpose: open_clip's CLIP ViT instead of timm's
ImageNet ViT (prefixes through :func:`cl.models.tokens.prefix_attention`, the
computation of the reference's ``Attention`` with a prompt, on the same weights); the
Gaussian draws of the Gram–Schmidt initialisation come from the task's seeded generator,
not the global RNG (same procedure, other numbers); each task's components are their own
parameters (same updates, see :mod:`strategies.prompts.coda`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import nn

from cl.core.strategy import Context
from cl.models import tokens
from strategies.prompts.base import PromptStrategy
from strategies.prompts.coda import CodaPool, coda_ortho_loss, coda_prefix
from strategies.prompts.options import CodaPromptOptions


class CodaPrompt(PromptStrategy):
    """CODA-Prompt on open_clip: attention-weighted prompt components as prefixes.

    Parameters
    ----------
    options : CodaPromptOptions, optional
        Hyper-parameters (defaults: the reference's split CIFAR-100 run).
    **overrides
        Fields of the options to change; these are the strategy's config options.
    """

    label: ClassVar[str] = "coda-prompt"
    options_class = CodaPromptOptions
    options: CodaPromptOptions
    timm_head_init = False  # the reference's head is a plain nn.Linear

    def build_prompts(self, model: nn.Module, ctx: Context, generator: torch.Generator
                      ) -> dict[str, nn.Module]:
        o, width = self.options, model.visual.transformer.width
        layers = self.layers(model, o.layers, "layers", ctx)
        pool = CodaPool(len(layers), len(ctx.stream), o.pool_size, o.prompt_length, width)
        pool.initialise(0, generator)
        return {"coda": pool}

    def begin_task(self, model: nn.Module, ctx: Context) -> None:
        super().begin_task(model, ctx)
        if ctx.task_index > 0:
            self.coda.initialise(ctx.task_index, ctx.generator)

    def trainable_modules(self, model: nn.Module, ctx: Context
                          ) -> Iterable[nn.Module | nn.Parameter]:
        """Task t's components (earlier ones stay frozen) and the head."""
        own: list[nn.Module] = [self.coda.blocks[ctx.task_index]]
        return own + ([self.head] if self.options.head != "text" else [])

    def _lr_factor(self, step: int, total: int) -> float:
        if self.options.schedule != "coda-cosine":
            return super()._lr_factor(step, total)
        epochs = self.options.epochs or total
        if epochs == 1:
            return 1.0
        epoch = step * epochs // total
        return math.cos(99 * math.pi * epoch / (200 * (epochs - 1)))

    def prompted(self, model: nn.Module, images: torch.Tensor, query: torch.Tensor, *,
                 task: int, train: bool) -> tuple[torch.Tensor, torch.Tensor | float]:
        o, visual = self.options, model.visual
        prefixes: dict[int, tokens.Prefix] = {}
        extra: torch.Tensor | float = 0.0
        for i, layer in enumerate(self.prompt_layers["layers"]):
            keys, attention, prompts = self.coda.components(i, task)
            prefixes[layer] = tokens.Prefix(*coda_prefix(query, keys, attention, prompts))
            if train and o.ortho_mu > 0:
                extra = extra + o.ortho_mu * coda_ortho_loss(keys, attention, prompts)
        x = tokens.run_blocks(visual, tokens.embed_tokens(visual, images), prefixes=prefixes)
        return tokens.pool_and_project(visual, x, project=False), extra


__all__ = ["CodaPrompt"]
