"""CTP's compatible momentum model and the queue of momentum features.

The momentum model of ALBEF (Li et al., NeurIPS 2021, Sec. 3.3) is an
exponential moving average of the model; CTP (Zhu et al., ICCV 2023) makes it
*compatible* across tasks by averaging towards both the current model and the
frozen model of the previous task. The order of one CTP training step is
(KevinLight831/CTP ``models/clip_pretrain.py``, ``CLIP_Pretrain.CTP``):

1. :func:`compatible_momentum_update` (before any momentum feature is computed);
2. the momentum model encodes the batch; the losses read those features and the
   queue as it was *before* this batch
   (:func:`strategies.imagetext.losses.momentum_contrast_loss`);
3. :meth:`FeatureQueue.enqueue` the momentum features of the batch.

At the start of every task after the first, CTP copies the current model into
both the reference and the momentum model (``train/train_CTP.py``); the queue
persists across tasks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeatureQueue", "compatible_momentum_update"]


@torch.no_grad()
def compatible_momentum_update(
    momentum_model: nn.Module,
    model: nn.Module,
    reference_model: nn.Module | None = None,
    *,
    momentum: float,
) -> None:
    """Move the momentum model's parameters towards the model (and the reference model).

    Without a reference model (ALBEF's update, CTP's first task, ``momentum = 0.995``)::

        theta_m <- m * theta_m + (1 - m) * theta

    With the previous-task model ``theta_ref`` (CTP's later tasks, ``m = 0.9``)::

        theta_m <- m * theta_m + (1 - m) / 2 * theta + (1 - m) / 2 * theta_ref

    As ``CLIP_Pretrain._momentum_update`` and ``_momentum_update_three`` of
    KevinLight831/CTP ``models/clip_pretrain.py``, over every parameter (the
    reference's model pairs cover its whole dual encoder).

    Parameters
    ----------
    momentum_model, model : nn.Module
        Same architecture; only ``momentum_model`` changes (in place).
    reference_model : nn.Module or None
        The frozen model of the previous task.
    momentum : float
        ``m`` in [0, 1].

    Raises
    ------
    ValueError
        ``momentum`` outside [0, 1], or the models' parameters do not match in
        number and shapes.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}.")
    models = [model] if reference_model is None else [model, reference_model]
    targets = list(momentum_model.parameters())
    sources = [list(m.parameters()) for m in models]
    for params in sources:
        if len(params) != len(targets) or any(p.shape != t.shape for p, t in zip(params, targets)):
            raise ValueError("the momentum model and the models it follows must have the same "
                             "parameters (same architecture).")
    if reference_model is None:
        for t, p in zip(targets, sources[0]):
            t.data = t.data * momentum + p.data * (1.0 - momentum)
    else:
        for t, p, r in zip(targets, sources[0], sources[1]):
            t.data = t.data * momentum + p.data * (1.0 - momentum) / 2 + r.data * (1.0 - momentum) / 2


class FeatureQueue:
    """First-in first-out queue of momentum image and text features.

    MoCo's queue (He et al., CVPR 2020, Sec. 3.2) as ALBEF and CTP keep it: two
    (K, D) tables of unit vectors, filled at random (normalised Gaussian) and
    overwritten, oldest first, by the momentum features of each global batch.

    Parameters
    ----------
    size : int
        ``K``, the number of queued pairs (CTP: 1024).
    dim : int
        ``D``, the embedding dimension.
    generator : torch.Generator, optional
        Source of the random initial content.

    Attributes
    ----------
    image, text : torch.Tensor, shape (K, D)
    pointer : int
        Row where the next batch is written.
    """

    def __init__(self, size: int, dim: int, *, generator: torch.Generator | None = None) -> None:
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be positive, got size={size}, dim={dim}.")
        self.image = F.normalize(torch.randn(size, dim, generator=generator), dim=1)
        self.text = F.normalize(torch.randn(size, dim, generator=generator), dim=1)
        self.pointer = 0

    @property
    def size(self) -> int:
        """``K``."""
        return self.image.shape[0]

    def to(self, device: torch.device | str) -> FeatureQueue:
        """Move the tables to ``device`` (in place); returns ``self``."""
        self.image, self.text = self.image.to(device), self.text.to(device)
        return self

    @torch.no_grad()
    def enqueue(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """Write a batch of momentum features over the oldest rows.

        Parameters
        ----------
        image_features, text_features : torch.Tensor, shape (B, D)
            This rank's momentum features (normalised here); with
            ``world_size > 1`` every rank's are gathered and written in rank order.
        rank, world_size : int

        Raises
        ------
        ValueError
            The global batch does not divide ``K`` (the reference asserts it), or
            shapes do not match the queue.
        """
        if image_features.shape != text_features.shape or image_features.shape[1:] != self.image.shape[1:]:
            raise ValueError(f"features must both be (B, {self.image.shape[1]}), got "
                             f"{tuple(image_features.shape)} and {tuple(text_features.shape)}.")
        img = F.normalize(image_features.detach(), dim=1)
        txt = F.normalize(text_features.detach(), dim=1)
        if world_size > 1:
            from open_clip.loss import gather_features

            img, txt = gather_features(img, txt, local_loss=True, rank=rank, world_size=world_size)
        batch = img.shape[0]
        if self.size % batch:
            raise ValueError(f"the global batch ({batch}) must divide the queue size ({self.size}); "
                             "choose a batch size that divides it.")
        self.image[self.pointer:self.pointer + batch] = img.to(self.image)
        self.text[self.pointer:self.pointer + batch] = txt.to(self.text)
        self.pointer = (self.pointer + batch) % self.size

    def state_dict(self) -> dict[str, Any]:
        """Tables and pointer, for checkpoints."""
        return {"image": self.image.clone(), "text": self.text.clone(), "pointer": self.pointer}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (tables must have this queue's shape)."""
        if state["image"].shape != self.image.shape or state["text"].shape != self.text.shape:
            raise ValueError(f"queue state has shape {tuple(state['image'].shape)}, this queue "
                             f"{tuple(self.image.shape)}.")
        self.image = state["image"].clone().to(self.image.device)
        self.text = state["text"].clone().to(self.text.device)
        self.pointer = int(state["pointer"])
