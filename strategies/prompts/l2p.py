"""``l2p``: Learning to Prompt (Wang et al., CVPR 2022; ``JH-LEE-KR/l2p-pytorch`` @ f7bc994).

A pool of M prompts (L_p tokens each) with keys; an image's frozen query picks the N
closest keys (cosine, L2P eq. 3; majority vote over the batch with ``batchwise_prompt``)
and their prompts are inserted after [CLS] at the input (prompt-tuning); the classifier
reads the mean of the prompt tokens' outputs (the reference's ``head_type='prompt'``).
Loss: cross-entropy with the old-class logits masked minus ``λ`` times the pull
constraint (L2P eq. 5). Rehearsal-free; the backbone stays frozen.

Deviations from the reference, on purpose: open_clip's CLIP ViT instead of timm's
ImageNet ViT, so the prompts join the token sequence after CLIP's ``ln_pre`` (a timm ViT
has none; the reference's prompts, like ours, enter the first block un-normalised) and
without the [CLS] positional embedding the reference adds to them (a constant shift a
learnable prompt absorbs); the pooled feature feeding the head is CLIP's ``ln_post``
output (width D), as the reference's ``norm`` output.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from cl.core.strategy import Context
from cl.models import tokens
from strategies.prompts.base import PromptStrategy
from strategies.prompts.options import L2POptions
from strategies.prompts.selection import PromptPool


class L2P(PromptStrategy):
    """L2P on open_clip: a key-matched prompt pool at the input, linear, text or language head.

    Parameters
    ----------
    options : L2POptions, optional
        Hyper-parameters (defaults: the reference's split CIFAR-100 run).
    **overrides
        Fields of the options to change; these are the strategy's config options.
    """

    label: ClassVar[str] = "l2p"
    options_class = L2POptions
    options: L2POptions

    def build_prompts(self, model: nn.Module, ctx: Context, generator: torch.Generator
                      ) -> dict[str, nn.Module]:
        o, width = self.options, model.visual.transformer.width
        self.layers(model, (0,), "prompt_layer", ctx)
        return {"pool": PromptPool((o.prompt_length, width), o.pool_size, width, generator)}

    def prompted(self, model: nn.Module, images: torch.Tensor, query: torch.Tensor, *,
                 task: int, train: bool) -> tuple[torch.Tensor, torch.Tensor | float]:
        o, visual = self.options, model.visual
        chosen, pull = self.pool(query, o.top_k, batchwise=o.batchwise_prompt)
        prompts = chosen.reshape(len(images), -1, chosen.shape[-1])  # (B, N·L_p, D)
        x = tokens.insert_prompts(tokens.embed_tokens(visual, images), prompts)
        x = tokens.run_blocks(visual, x)
        features = tokens.pool_prompts(visual, x, prompts.shape[1], project=False)
        return features, -o.pull_constraint_coeff * pull


__all__ = ["L2P"]
