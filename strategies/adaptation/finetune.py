"""Continual fine-tuning of open_clip and two classic regularisers: ``clip-finetune``, ``lwf``, ``wise-ft``.

All three train every weight of the chosen towers (the logit scale stays frozen) with
AdamW, a linear warm-up then cosine learning rate and the CLIP image→text cross-entropy
with label smoothing, as ZSCL's baseline scripts run them (Zheng et al., ICCV 2023,
``Thunderbeee/ZSCL`` @ b96e714, ``mtil/src/models/finetune.py``; ``scripts/finetune.sh``,
``lwf.sh``, ``WiSE_finetune.sh``). They predict with plain CLIP.

* :class:`CLIPFinetune` — the lower bound of every MTIL / X-TAIL table.
* :class:`LwF` — Learning without Forgetting (Li & Hoiem, TPAMI 2017, §3, Eq. 2–3) as
  ZSCL's baseline: distil, on a second stream of the current task's images, the
  distributions of the model the task started from over the current class prompts
  (:func:`~strategies.adaptation.losses.clip_distillation`).
* :class:`WiseFT` — weight-space ensembling (Wortsman et al., CVPR 2022, Eq. 1) after
  every task: ``θ ← α·θ_fine-tuned + (1 − α)·θ_anchor``.

Deviations from the reference, on purpose: T optimiser steps per task where the reference
runs T + 1 (its last at learning rate 0: the same weights); the teacher's prompt
embeddings are computed once per task (the reference recomputes the same values every
step). Proof of fidelity: ``docs/fidelity.md``; costs: ``docs/adaptation.md``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import nn

from cl.core.strategy import Context, TaskData
from strategies.adaptation.base import AdaptingStrategy, Term
from strategies.adaptation.clip_objective import prompts
from strategies.adaptation.losses import classification_loss, clip_distillation
from strategies.adaptation.options import (
    FinetuneOptions,
    LwFOptions,
    WiseFTOptions,
    ZSCLOptions,
    towers_of,
)
from strategies.adaptation.schedule import warmup_cosine_factor
from strategies.adaptation.weight_ensemble import interpolate
from streams.core import Stream

#: parameters never trained by fine-tuning (the reference's ``exclude_params_name``)
FROZEN: tuple[str, ...] = ("logit_scale", "logit_bias")


def tower_parameters(model: nn.Module, encoders: str) -> dict[str, nn.Parameter]:
    """``{name: parameter}`` of the towers ``encoders`` names, in the model's order.

    ``vision``: the ``visual.*`` parameters; ``text``: every other one; ``both``: all;
    the logit scale (and bias) never (ZSCL ``finetune.py`` l. 67–85, ``--train-mode``
    ``image`` / ``text`` / ``whole``).
    """
    towers = towers_of(encoders)
    out = {}
    for name, p in model.named_parameters():
        if name in FROZEN:
            continue
        if ("vision" if name.startswith("visual.") else "text") in towers:
            out[name] = p
    return out


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in evaluation mode with no parameter requiring a gradient."""
    teacher = copy.deepcopy(model).eval()
    teacher.requires_grad_(False)
    return teacher


class CLIPFinetune(AdaptingStrategy):
    """Continual fine-tuning of open_clip's towers on each task in turn.

    Parameters
    ----------
    options : FinetuneOptions, optional
        Hyper-parameters (defaults: ZSCL's ``scripts/finetune.sh``).
    **overrides
        Fields of the options to change; these are the strategy's config options.
    """

    label = "clip-finetune"
    options_class = FinetuneOptions
    options: FinetuneOptions
    searchable: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "lr": ("log-uniform", 1e-6, 1e-3), "label_smoothing": ("uniform", 0.0, 0.3)}

    def __init__(self, options: FinetuneOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(replace(options or type(self).options_class(), **overrides))

    # -- what trains --------------------------------------------------------------------------
    def trained(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The parameters this strategy trains (see :func:`tower_parameters`)."""
        return tower_parameters(model, self.options.encoders)

    def _check_backbone(self, backbone: Any, model: nn.Module) -> None:
        if "text" in towers_of(self.options.encoders) and not getattr(backbone, "has_text", False):
            raise ValueError(
                f"{self.label} encoders={self.options.encoders!r} trains the text tower, but "
                f"backbone {backbone.name!r} has none; use encoders='vision'.")

    def _param_groups(self, model: nn.Module, ctx: Context) -> list[dict[str, Any]]:
        return [{"params": list(self.trained(model).values())}]

    def _trains_text(self) -> bool:
        return "text" in towers_of(self.options.encoders)

    def check_run(self, backbone: Any, stream: Stream) -> dict[str, Any]:
        """``lr_per_task`` must hold one rate per task of the stream."""
        per_task = self.options.lr_per_task
        if per_task and len(per_task) != len(stream):
            raise ValueError(
                f"option 'lr_per_task' has {len(per_task)} rates but stream {stream.name!r} has "
                f"{len(stream)} tasks; give one per task, in stream order.")
        return super().check_run(backbone, stream)

    def _task_lr(self, ctx: Context) -> float:
        per_task = self.options.lr_per_task
        if not per_task:
            return self.options.lr
        if len(per_task) != len(ctx.stream):
            raise ValueError(
                f"lr_per_task has {len(per_task)} rates but stream {ctx.stream.name!r} has "
                f"{len(ctx.stream)} tasks; give one per task, in stream order.")
        return per_task[ctx.task_index]

    def _lr_factor(self, step: int, total: int) -> float:
        return warmup_cosine_factor(step, total, self.options.warmup)

    def _task_loss(self, model: nn.Module, image: torch.Tensor, text: torch.Tensor,
                   target: torch.Tensor) -> torch.Tensor:
        return classification_loss(image, text, target, model.logit_scale.exp(),
                                   label_smoothing=self.options.label_smoothing)

    # -- state ----------------------------------------------------------------------------------
    def _state(self, model: nn.Module) -> dict[str, Any]:
        return {"weights": {k: p.detach().cpu().clone() for k, p in self.trained(model).items()}}

    def _restore(self, model: nn.Module, state: dict[str, Any]) -> None:
        self.write_parameters(model, state["weights"])


class LwF(CLIPFinetune):
    """CLIP fine-tuning with distillation from the model the task started from (LwF, as ZSCL's baseline).

    Parameters
    ----------
    options : LwFOptions, optional
        Hyper-parameters (defaults: ZSCL's ``scripts/lwf.sh``: T = 2, image and text terms).
    **overrides
        Fields of the options to change.
    """

    label = "lwf"
    options_class = LwFOptions
    options: LwFOptions

    def __init__(self, options: LwFOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        self._teacher: nn.Module | None = None
        self._teacher_text: torch.Tensor | None = None
        self._second: Any = None

    def _begin_task(self, model: nn.Module, ctx: Context) -> None:
        self._teacher = frozen_copy(model)
        device = next(model.parameters()).device
        with torch.no_grad(), self.autocast(device):
            tokens = self._backbone.tokenizer(prompts(ctx.label_space)).to(device)
            self._teacher_text = self._teacher.encode_text(tokens, normalize=True)

    def _extra_terms(self, model: nn.Module, step: int, ctx: Context) -> list[Term]:
        if self._teacher is None or self._teacher_text is None or self._data is None:
            raise RuntimeError("lwf trains only between before_task and after_task.")
        if step == 0:  # the reference's second loader over the task's images
            seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
            self._second = self.cycle(self._data.dataset, self.options.batch_size,
                                      torch.Generator().manual_seed(seed), ctx)
        x, _ = next(self._second)
        with self.autocast(next(model.parameters()).device):
            return [distillation_term(model, self._teacher, x, self._teacher_text, self.options)]

    def _end_task(self, model: nn.Module, data: TaskData | None, ctx: Context) -> None:
        self._abort(model)

    def _abort(self, model: nn.Module) -> None:
        self._teacher = self._teacher_text = self._second = None


def distillation_term(model: nn.Module, teacher: nn.Module, images: torch.Tensor,
                      teacher_text: torch.Tensor, options: LwFOptions | ZSCLOptions) -> Term:
    """``distill_weight · clip_distillation`` of ``images`` (B, 3, H, W) against ``teacher``.

    The student's and the teacher's image embeddings of the same images are scored
    against the teacher's text embeddings (M, D) (see
    :func:`~strategies.adaptation.losses.clip_distillation`); the loss is taken in
    float32 (float64 kept). An empty share of the batch on this rank gives a zero term of count 0.
    """
    device = next(model.parameters()).device
    if not len(images):
        return torch.zeros((), device=device), 0
    images = images.to(device)
    student = model.encode_image(images, normalize=True)
    with torch.no_grad():
        reference = teacher.encode_image(images, normalize=True)
    dtype = torch.promote_types(student.dtype, torch.float32)  # bf16 up to fp32, fp64 kept
    with torch.autocast(device.type, enabled=False):
        loss = clip_distillation(student.to(dtype), reference.to(dtype), teacher_text.to(dtype),
                                 model.logit_scale.exp().to(dtype), temperature=options.temperature,
                                 image_loss=options.image_loss, text_loss=options.text_loss)
    return options.distill_weight * loss, len(images)


class WiseFT(CLIPFinetune):
    """CLIP fine-tuning, then WiSE-FT interpolation of the weights after every task.

    Parameters
    ----------
    options : WiseFTOptions, optional
        Hyper-parameters (defaults: ZSCL's ``scripts/WiSE_finetune.sh``: α = 0.8, the
        task-start weights as anchor).
    **overrides
        Fields of the options to change.
    """

    label = "wise-ft"
    options_class = WiseFTOptions
    options: WiseFTOptions

    def __init__(self, options: WiseFTOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        self._zeroshot: dict[str, torch.Tensor] = {}
        self._anchor: dict[str, torch.Tensor] = {}

    def _on_bind(self, model: nn.Module) -> None:
        if self.options.anchor == "zeroshot":  # the backbone as given is the zero-shot model
            self._zeroshot = {k: p.detach().cpu().clone() for k, p in self.trained(model).items()}

    def _begin_task(self, model: nn.Module, ctx: Context) -> None:
        if self.options.anchor == "previous":
            self._anchor = {k: p.detach().cpu().clone() for k, p in self.trained(model).items()}
        else:
            self._anchor = self._zeroshot

    def _end_task(self, model: nn.Module, data: TaskData | None, ctx: Context) -> None:
        if not self._anchor:
            raise RuntimeError("wise-ft: after_task without before_task; no anchor weights.")
        current = {k: p.detach() for k, p in self.trained(model).items()}
        device = next(model.parameters()).device
        anchor = {k: v.to(device) for k, v in self._anchor.items()}
        self.write_parameters(model, interpolate(anchor, current, self.options.alpha))
        self._anchor = {}

    def memory_bytes(self) -> int:
        """The zero-shot anchor kept between tasks (``anchor = "zeroshot"``), in bytes."""
        return sum(v.numel() * v.element_size() for v in self._zeroshot.values())


__all__ = ["CLIPFinetune", "LwF", "WiseFT", "distillation_term", "frozen_copy", "tower_parameters"]
