"""What ``l2p``, ``dualprompt`` and ``coda-prompt`` share: the frozen query, the head, the mask.

:class:`PromptStrategy` is a :class:`~strategies.TrainingStrategy`: the open_clip backbone
stays frozen; a method adds its prompts (and keys) and says how an image is prompted
(:meth:`PromptStrategy.prompted`). The base adds

* the **query** ``q(x)``: the frozen, unprompted tower's pooled feature after ``ln_post``,
  before the projection — the [CLS] "pre-logits" the references take from their
  ``original_model`` (:meth:`query`);
* the **classifier** (``head``): ``"linear"``, the references' linear layer over every
  class of the stream on the prompted model's pooled feature (width D); ``"text"``,
  CLIP's frozen text classifier ``s · î·t̂ᵀ`` on the projected feature; or ``"language"``,
  LingoCL's language-guided head (:class:`cl.models.language_head.LanguageHead`: targets
  of every class name of the stream from ``language_encoder``, built once and frozen, a
  trainable projection W_p: D → D_t drawn as the linear head would be, cosine logits at
  ``head_temperature``) on the same pooled feature as the linear head;
* the **old-class logit masking** of training (``train_mask``,
  :func:`~strategies.prompts.losses.mask_logits`) and the loss: cross-entropy of the
  masked logits plus the method's own terms (L2P/DualPrompt: ``−λ · pull``, L2P eq. 5;
  CODA-Prompt: ``μ · ortho``, eq. 6), which :meth:`PromptStrategy.prompted` returns.

Blocks a method's layer options name that the tower does not have (DualPrompt's E-prompt
at block 4 on a 4-block tower) are left out, with a warning, and the layers used are
recorded per task as ``prompt_layers``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cl.core.strategy import Context
from cl.models import tokens
from cl.models.language_head import LanguageHead, stream_targets
from strategies.adaptation.training import TrainingStrategy
from strategies.prompts.losses import mask_logits
from strategies.prompts.options import PromptOptions
from streams.core import LabelSpace


class PromptStrategy(TrainingStrategy):
    """Base of the prompt methods (see module docstring); subclasses implement
    :meth:`build_prompts` and :meth:`prompted`."""

    options: PromptOptions
    label: ClassVar[str] = "prompts"
    #: whether the linear head starts from timm's ViT init (N(0, 0.02²) truncated, zero bias)
    timm_head_init: ClassVar[bool] = True

    # -- what a method provides ----------------------------------------------------------------
    def build_prompts(self, model: nn.Module, ctx: Context, generator: torch.Generator
                      ) -> dict[str, nn.Module]:
        """The method's prompt modules (prompts, keys), drawn from ``generator``."""
        raise NotImplementedError

    def prompted(self, model: nn.Module, images: torch.Tensor, query: torch.Tensor, *,
                 task: int, train: bool) -> tuple[torch.Tensor, torch.Tensor | float]:
        """Pooled features (B, D) of the prompted tower and the method's term added to the
        cross-entropy (0 when none), for the model after task ``task`` (``train``: while
        learning task ``task``)."""
        raise NotImplementedError

    # -- shared parts --------------------------------------------------------------------------
    def build(self, model: nn.Module, ctx: Context) -> dict[str, nn.Module]:
        tokens.check_tower(model.visual, prefixes=True)
        self.prompt_layers: dict[str, tuple[int, ...]] = {}
        # a restored strategy is built lazily, by its first predict: keep the last task trained
        self._stream, self._task = ctx.stream, max(self._tasks_trained - 1, 0)
        generator = torch.Generator().manual_seed(ctx.seed)
        modules = self.build_prompts(model, ctx, generator)
        o, width = self.options, model.visual.transformer.width
        if o.head == "linear":
            modules["head"] = self._init_linear(nn.Linear(width, ctx.stream.n_classes),
                                                generator)
        elif o.head == "language":
            head = LanguageHead(stream_targets(ctx.stream, o.language_encoder, ctx.backbone),
                                width, temperature=o.head_temperature)
            self._init_linear(head.projection, generator)
            modules["head"] = head
        return modules

    def _init_linear(self, layer: nn.Linear, generator: torch.Generator) -> nn.Linear:
        """``layer`` redrawn from ``generator``: timm's ViT head init (truncated N(0, 0.02²),
        zero bias) when :attr:`timm_head_init`, else nn.Linear's own U(±1/√fan_in)."""
        with torch.no_grad():
            if self.timm_head_init:
                nn.init.trunc_normal_(layer.weight, std=0.02, generator=generator)
                layer.bias.zero_()
            else:
                bound = layer.in_features ** -0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
        return layer

    def layers(self, model: nn.Module, wanted: Sequence[int], option: str, ctx: Context
               ) -> tuple[int, ...]:
        """The blocks of ``wanted`` the tower has (kept in :attr:`prompt_layers` under
        ``option``); a warning names the others."""
        depth = tokens.depth(model.visual)
        kept = tuple(layer for layer in wanted if layer < depth)
        if len(kept) != len(wanted):
            ctx.logger.warning("%s: %s=%s names blocks the %d-block tower lacks; using %s.",
                               self.label, option, list(wanted), depth, list(kept))
        self.prompt_layers[option] = kept
        return kept

    def query(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """q(x) (B, D): the unprompted tower's pooled feature after ``ln_post``, no gradient."""
        with torch.no_grad():
            visual = model.visual
            return tokens.pool_and_project(visual, tokens.run_blocks(
                visual, tokens.embed_tokens(visual, images)), project=False)

    def class_logits(self, model: nn.Module, features: torch.Tensor, class_ids: Sequence[int]
                     ) -> torch.Tensor:
        """Logits (B, C) of pooled features (B, D) over global ``class_ids``."""
        if self.options.head in ("linear", "language"):
            return self.head(features)[:, list(class_ids)]  # type: ignore[attr-defined]
        embedding = features @ model.visual.proj
        embedding = embedding / embedding.norm(dim=-1, keepdim=True)
        space = self._space(class_ids)
        return self.clip_logits(model, embedding, space)

    def _space(self, class_ids: Sequence[int]) -> LabelSpace:
        everything = self._stream.task_label_space(range(len(self._stream)))
        where = {c: i for i, c in enumerate(everything.class_ids)}
        idx = [where[c] for c in class_ids]
        return LabelSpace(*(tuple(getattr(everything, f)[i] for i in idx)
                            for f in ("class_ids", "class_names", "templates")))

    # -- TrainingStrategy hooks ----------------------------------------------------------------
    def begin_task(self, model: nn.Module, ctx: Context) -> None:
        self._stream = ctx.stream
        self._task = ctx.task_index
        ctx.record("prompt_layers", {k: list(v) for k, v in self.prompt_layers.items()})

    def loss(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
             ctx: Context) -> torch.Tensor:
        everything = list(range(ctx.stream.n_classes))
        query = self.query(model, images)
        features, extra = self.prompted(model, images, query, task=ctx.task_index, train=True)
        logits = self.class_logits(model, features, everything)
        if self.options.train_mask:
            mine = torch.as_tensor(ctx.stream.task_label_space([ctx.task_index]).class_ids,
                                   device=logits.device)
            if not torch.isin(targets, mine).all():
                raise ValueError(f"{self.label}: train_mask=true masks every class outside "
                                 f"task {ctx.task.name!r}, but a batch holds other classes "
                                 "(a replay plugin?); the method is rehearsal-free: drop the "
                                 "plugin or set strategy.train_mask=false.")
            logits = mask_logits(logits, mine)
        return F.cross_entropy(logits, targets) + extra

    def logits(self, model: nn.Module, images: torch.Tensor, label_space: LabelSpace
               ) -> torch.Tensor:
        features, _ = self.prompted(model, images, self.query(model, images),
                                    task=self._task, train=False)
        return self.class_logits(model, features, label_space.class_ids)

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context
                ) -> torch.Tensor:
        self._stream = ctx.stream
        self._task = max(self._tasks_trained - 1, 0)
        return super().predict(inputs, label_space, ctx)


__all__ = ["PromptStrategy"]
