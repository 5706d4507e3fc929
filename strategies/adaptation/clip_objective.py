"""CLIP as a classifier during training: class prompts, the training label space, the image→text loss.

Every strategy that trains open_clip on a task scores an image against the prompts of
its label space, ``s · î·t̂ᵀ`` with CLIP's frozen ``s = logit_scale.exp()`` (Radford
et al. 2021, §3.1.2 and Figure 3's zero-shot classifier), one prompt per class made
from the class's first template (ZSCL's ``dataset.template``; CoDyRA's reference runner).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from streams.core import LabelSpace


def clip_loss(
    image: torch.Tensor, text: torch.Tensor, target: torch.Tensor, scale: torch.Tensor,
    *, text_to_image: bool = False, label_smoothing: float = 0.0,
) -> torch.Tensor:
    """CLIP classification loss of one batch.

    Image→text: ``CE(s · î·t̂ᵀ, y)`` over the label-space prompts (CLIP's
    zero-shot logits as a classifier). With ``text_to_image`` the reference
    code's second term is added: ``CE(s · t̂·îᵀ, M)`` with soft targets
    ``M[c, b] = [y_b = c]`` (C×B), i.e. ``(1/C) Σ_c Σ_b M[c,b] · −log softmax_b``;
    classes absent from the batch contribute 0 but count in the mean.
    ``label_smoothing`` smooths the image→text targets (``F.cross_entropy``'s).

    Parameters
    ----------
    image : (B, D) L2-normalised image embeddings î
    text : (C, D) L2-normalised prompt embeddings t̂
    target : (B,) int64 positions in the label space
    scale : scalar tensor, CLIP's ``logit_scale.exp()``
    """
    logits = scale * image.float() @ text.float().T
    loss = F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    if text_to_image:
        mask = (target[None, :] == torch.arange(len(text), device=target.device)[:, None]).float()
        loss = loss + F.cross_entropy(logits.T, mask)
    return loss


def prompts(label_space: LabelSpace) -> list[str]:
    """First-template prompt of every class, e.g. ``"a photo of a 3."``."""
    return [label_space.templates[i][0].format(name)
            for i, name in enumerate(label_space.class_names)]


class GrowingLabelSpace:
    """The training label space, extended by classes a plugin replays from other tasks.

    Parameters
    ----------
    label_space : LabelSpace
        The task's training label space (``ctx.label_space``).
    stream : Stream
        Where replayed classes' names and templates are looked up.

    Attributes
    ----------
    space : LabelSpace
        The current space (the task's classes, then replayed ones in order of appearance).
    changed : bool
        True until the caller has encoded the prompts of the current space.
    """

    def __init__(self, label_space: LabelSpace, stream: Any) -> None:
        self.space, self.stream = label_space, stream
        self.changed = True
        self._pos = {g: i for i, g in enumerate(label_space.class_ids)}

    def positions(self, global_ids: list[int]) -> list[int]:
        """Positions of global class ids in :attr:`space`, extending it by unknown ones."""
        extra = sorted({g for g in global_ids if g not in self._pos})
        if extra:
            everything = self.stream.task_label_space(range(len(self.stream)))
            where = {g: i for i, g in enumerate(everything.class_ids)}
            missing = [g for g in extra if g not in where]
            if missing:
                raise ValueError(f"training labels {missing[:5]} are not classes of the stream.")
            s = self.space
            idx = [where[g] for g in extra]
            self.space = LabelSpace(
                s.class_ids + tuple(everything.class_ids[i] for i in idx),
                s.class_names + tuple(everything.class_names[i] for i in idx),
                s.templates + tuple(everything.templates[i] for i in idx),
            )
            self._pos = {g: i for i, g in enumerate(self.space.class_ids)}
            self.changed = True
        return [self._pos[g] for g in global_ids]

    def prompts(self) -> list[str]:
        """:func:`prompts` of :attr:`space`."""
        return prompts(self.space)
