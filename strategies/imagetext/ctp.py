"""``ctp``: compatible momentum contrast and topology preservation (Zhu et al., ICCV 2023).

CTP (KevinLight831/CTP ``models/clip_pretrain.py``, ``train/train_CTP.py``) trains
with, in the first task (``CTP_init``)::

    CLIP_τc(I, T) + MC(I, T; momentum model, queue)

and in every later task (``CTP``)::

    CLIP_τc(I, T) + MC(I, T; momentum model, queue) + TP(I, T; previous-task model)

with ``CLIP_τc`` the in-batch contrastive loss over the global batch (τc = 0.07,
CTP's fixed value, by default; ``contrastive_temperature=None`` keeps CLIP's learned
logit scale instead),
``MC`` the momentum contrast against the momentum model's features of the batch
and the queue (:func:`strategies.imagetext.losses.momentum_contrast_loss`), and
``TP`` the topology preservation towards the frozen model of the previous task
(:func:`strategies.imagetext.losses.topology_preservation_loss`). A step follows
:mod:`strategies.imagetext.momentum`: the momentum model is updated first (an EMA
of the model, ``first_task_momentum`` = 0.995, in the first task; the compatible
update towards the model and the previous-task model, ``momentum`` = 0.9,
after), then encodes the batch; the losses read the queue as it was before the
batch, which is then enqueued. At the start of every task the momentum model
(and after the first, the reference model) is a copy of the current model; the
queue persists across tasks.

Deviation: CTP's model is ALBEF-like, with masked language modelling and its
distillation; a CLIP dual encoder has no MLM head, so those terms are absent.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cl.core.strategy import Context
from cl.runtime import distributed
from strategies.imagetext.base import ContrastiveFinetune, full_precision
from strategies.imagetext.losses import (
    clip_loss,
    momentum_contrast_loss,
    topology_preservation_loss,
)
from strategies.imagetext.momentum import FeatureQueue, compatible_momentum_update
from strategies.imagetext.options import CTPOptions

__all__ = ["CTP"]


class CTP(ContrastiveFinetune):
    """CTP's momentum contrast and topology preservation on an open_clip model.

    Parameters
    ----------
    options : CTPOptions, optional
    **overrides
        Fields of :class:`~strategies.imagetext.options.CTPOptions`.

    Attributes
    ----------
    queue_ : FeatureQueue or None
        The momentum features queue (created in the first trained task).
    """

    label = "ctp"
    options_class = CTPOptions

    def __init__(self, options: CTPOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        self.queue_: FeatureQueue | None = None
        self._queue_state: dict[str, Any] | None = None
        self._momentum: nn.Module | None = None
        self._reference: nn.Module | None = None

    def _begin_task(self, model: nn.Module, ctx: Context) -> None:
        device = next(model.parameters()).device
        if self.queue_ is None:
            dim, restored = int(self._backbone.embed_dim), self._queue_state is not None
            # a restored queue draws nothing from the task's generator (a resumed run must
            # shuffle as the uninterrupted one)
            generator = torch.Generator().manual_seed(0) if restored else ctx.generator
            self.queue_ = FeatureQueue(self.options.queue_size, dim, generator=generator)
            if restored:
                self.queue_.load_state_dict(self._queue_state)
                self._queue_state = None
        self.queue_.to(device)
        self._momentum = self.frozen_copy(model)
        self._reference = self.frozen_copy(model) if self._tasks_trained > 0 else None

    def _terms(self, model: nn.Module, images: torch.Tensor, tokens: torch.Tensor,
               image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        o = self.options
        rank, world = distributed.rank(), distributed.world_size()
        if o.contrastive_temperature is not None:
            scale = image.new_tensor(1.0 / o.contrastive_temperature)
        terms = {"contrastive": clip_loss(rank=rank, world_size=world)(image, text, scale)}
        with torch.no_grad():
            if self._reference is None:
                compatible_momentum_update(self._momentum, model, momentum=o.first_task_momentum)
            else:
                compatible_momentum_update(self._momentum, model, self._reference,
                                           momentum=o.momentum)
            momentum_image = full_precision(self._momentum.encode_image(images, normalize=True))
            momentum_text = full_precision(self._momentum.encode_text(tokens, normalize=True))
        terms["momentum_contrast"] = momentum_contrast_loss(
            image, text, momentum_image, momentum_text, self.queue_.image, self.queue_.text,
            temperature=o.temperature, rank=rank, world_size=world)
        if self._reference is not None:
            with torch.no_grad():
                ref_image = full_precision(self._reference.encode_image(images, normalize=True))
                ref_text = full_precision(self._reference.encode_text(tokens, normalize=True))
            terms["topology"] = topology_preservation_loss(
                image, text, ref_image, ref_text, temperature=o.temperature, rank=rank,
                world_size=world)
        self.queue_.enqueue(momentum_image, momentum_text, rank=rank, world_size=world)
        return terms

    def _end_task(self, ctx: Context) -> None:
        self._momentum = self._reference = None

    def memory_bytes(self) -> int:
        """The queue carried to the next task (image and text tables)."""
        if self.queue_ is None:
            return 0
        return 2 * self.queue_.image.numel() * self.queue_.image.element_size()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if state:
            queue = self.queue_.state_dict() if self.queue_ is not None else self._queue_state
            state["queue"] = {k: v.cpu() if isinstance(v, torch.Tensor) else v
                              for k, v in queue.items()} if queue is not None else None
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.queue_ = None
        self._queue_state = state.get("queue")
