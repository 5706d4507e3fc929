"""``dualprompt``: DualPrompt (Wang et al., ECCV 2022; ``JH-LEE-KR/dualprompt-pytorch`` @ 7eb457d).

A G(eneral)-prompt shared by all tasks is a prefix (keys and values) of blocks
``g_layers`` (0–1); E(xpert)-prompts, one pool with keys, are prefixes of blocks
``e_layers`` (2–4). Training task t uses E-prompt t (``use_prompt_mask``), started from
E-prompt t−1 (``shared_prompt_pool``); evaluation picks the E-prompt whose key is
closest to the frozen query (majority vote over the batch with ``batchwise_prompt``).
The classifier reads the prompted [CLS]. Loss: cross-entropy with the old-class logits
masked minus ``λ`` times the pull constraint. Rehearsal-free; the backbone stays frozen.

Deviations from the reference, on purpose: open_clip's CLIP ViT instead of timm's
ImageNet ViT (prefixes enter open_clip's ``nn.MultiheadAttention`` blocks through
:func:`cl.models.tokens.prefix_attention`, ``PreT_Attention``'s computation on the same
weights). The reference's ``EPrompt`` reshapes the chosen prompts from
(layers, 2, B, …) to (layers, B, 2, …) without a permute (its issue #8), so with a batch
of B > 1 images the first half of the batch uses the key half of its E-prompt as keys
*and* values, the second half the value half, and without batchwise selection images
get other images' prompts; we use each image's own key and value halves, the paper's
definition (Wang et al. 2022, §4.1, eq. 2). ``docs/fidelity.md`` measures both.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from cl.core.strategy import Context
from cl.models import tokens
from strategies.prompts.base import PromptStrategy
from strategies.prompts.options import DualPromptOptions
from strategies.prompts.selection import PromptPool, uniform_


class GPrompt(nn.Module):
    """The G-prompt: prefix keys and values (layers, 2, L_g, D), U(−1, 1) initialised."""

    def __init__(self, layers: int, length: int, width: int, generator: torch.Generator) -> None:
        super().__init__()
        self.prompt = uniform_((layers, 2, length, width), generator)


class DualPrompt(PromptStrategy):
    """DualPrompt on open_clip: G- and E-prompt prefixes, linear, text or language head.

    Parameters
    ----------
    options : DualPromptOptions, optional
        Hyper-parameters (defaults: the reference's split CIFAR-100 run).
    **overrides
        Fields of the options to change; these are the strategy's config options.
    """

    label: ClassVar[str] = "dualprompt"
    options_class = DualPromptOptions
    options: DualPromptOptions

    def build_prompts(self, model: nn.Module, ctx: Context, generator: torch.Generator
                      ) -> dict[str, nn.Module]:
        o, width = self.options, model.visual.transformer.width
        g_layers = self.layers(model, o.g_layers, "g_layers", ctx)
        e_layers = self.layers(model, o.e_layers, "e_layers", ctx)
        modules: dict[str, nn.Module] = {}
        if g_layers:
            modules["g_prompt"] = GPrompt(len(g_layers), o.g_length, width, generator)
        if e_layers:
            modules["e_pool"] = PromptPool((len(e_layers), 2, o.e_length, width), o.pool_size,
                                           width, generator)
        return modules

    def begin_task(self, model: nn.Module, ctx: Context) -> None:
        super().begin_task(model, ctx)
        o, t = self.options, ctx.task_index
        if o.shared_prompt_pool and t > 0 and (t + 1) * o.top_k <= o.pool_size \
                and "e_layers" in self.prompt_layers and self.prompt_layers["e_layers"]:
            with torch.no_grad():  # the reference's engine.py: E-prompt t := E-prompt t-1
                prompts = self.e_pool.prompts
                prompts[t * o.top_k:(t + 1) * o.top_k] = prompts[(t - 1) * o.top_k:t * o.top_k]

    def prompted(self, model: nn.Module, images: torch.Tensor, query: torch.Tensor, *,
                 task: int, train: bool) -> tuple[torch.Tensor, torch.Tensor | float]:
        o, visual, n = self.options, model.visual, len(images)
        prefixes: dict[int, tokens.Prefix] = {}
        for i, layer in enumerate(self.prompt_layers["g_layers"]):
            prefixes[layer] = tokens.Prefix(self.g_prompt.prompt[i, 0], self.g_prompt.prompt[i, 1])
        pull: torch.Tensor | float = 0.0
        if self.prompt_layers["e_layers"]:
            forced = None
            if train and o.use_prompt_mask and (task + 1) * o.top_k <= o.pool_size:
                forced = torch.arange(task * o.top_k, (task + 1) * o.top_k,
                                      device=query.device).expand(n, -1)
            chosen, pull = self.e_pool(query, o.top_k, batchwise=o.batchwise_prompt,
                                       forced=forced)  # (B, N, layers, 2, L_e, D)
            for i, layer in enumerate(self.prompt_layers["e_layers"]):
                key = chosen[:, :, i, 0].reshape(n, -1, chosen.shape[-1])
                value = chosen[:, :, i, 1].reshape(n, -1, chosen.shape[-1])
                prefixes[layer] = tokens.Prefix(key, value)
        x = tokens.run_blocks(visual, tokens.embed_tokens(visual, images), prefixes=prefixes)
        features = tokens.pool_and_project(visual, x, project=False)
        return features, -o.pull_constraint_coeff * pull


__all__ = ["DualPrompt", "GPrompt"]
