"""Loss terms of the CLIP fine-tuning baselines: classification, LwF / ZSCL distillation, L2 anchor.

Every term is written as the reference code computes it (ZSCL, Zheng et al., ICCV 2023,
``Thunderbeee/ZSCL`` @ b96e714, ``mtil/src/models/finetune.py`` and
``mtil/src/models/helpers.py``); the reference's line numbers are given per function.
Embeddings are L2-normalised, logits are ``s · a·bᵀ`` with CLIP's frozen
``s = logit_scale.exp()``.

* :func:`classification_loss` — the image→text cross-entropy our LoRA uses
  (:func:`strategies.lora.base.clip_loss`), with the label smoothing of the
  reference runs (``--ls 0.2``).
* :func:`distillation_loss` — Hinton-style soft cross-entropy at temperature T.
* :func:`clip_distillation` — ZSCL's distillation in feature space (image and
  "text" terms); LwF (Li & Hoiem, TPAMI 2017) as ZSCL's baseline scripts run it
  is the same function with the previous task's model as teacher and the current
  task's images and class prompts as reference data.
* :func:`weight_l2_loss` — ZSCL's weight constraint ``--l2`` (squared distance to the
  weights at the start of the task).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from strategies.adaptation.clip_objective import clip_loss


def classification_loss(
    image: torch.Tensor, text: torch.Tensor, target: torch.Tensor, scale: torch.Tensor,
    *, label_smoothing: float = 0.0,
) -> torch.Tensor:
    """CLIP image→text cross-entropy ``CE_ε(s · î·t̂ᵀ, y)`` over the label-space prompts.

    With ``label_smoothing = 0`` this is exactly :func:`strategies.lora.base.clip_loss`
    (the loss of our LoRA / CoDyRA). With ε > 0 the target is ``(1 − ε)·onehot(y) + ε/C``
    (Szegedy et al. 2016, "Rethinking the Inception Architecture", §7;
    ``torch.nn.functional.cross_entropy``'s
    ``label_smoothing``), as the reference's ``F.cross_entropy(logits_per_image, labels,
    label_smoothing=args.ls)`` (ZSCL ``finetune.py`` l. 223–224; MoE-Adapters
    ``finetune.py`` l. 181–182).

    Parameters
    ----------
    image : (B, D) L2-normalised image embeddings î
    text : (C, D) L2-normalised class-prompt embeddings t̂
    target : (B,) int64 positions in the label space
    scale : scalar tensor ``logit_scale.exp()``
    label_smoothing : float in [0, 1)

    Returns
    -------
    scalar tensor (mean over the batch)
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
    if label_smoothing == 0.0:
        return clip_loss(image, text, target, scale)
    dtype = torch.promote_types(image.dtype, torch.float32)  # bf16 up to fp32, fp64 kept
    logits = scale * image.to(dtype) @ text.to(dtype).T
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)


def distillation_loss(
    teacher: torch.Tensor, student: torch.Tensor, temperature: float = 2.0
) -> torch.Tensor:
    """Soft cross-entropy ``T² · mean_b Σ_c −softmax(t_b/T)_c · log softmax(s_b/T)_c``.

    Knowledge distillation (Hinton et al. 2015, Eq. 1 with the T² gradient scale of
    §2), written as ZSCL's ``distillation(t, s, T)`` (``helpers.py`` l. 64–67):
    ``F.cross_entropy(s / T, softmax(t / T), reduction="mean") · T²``. It equals
    ``T² · (KL(p_t ‖ p_s) + H(p_t))`` per row: the same gradient as the KL form, with
    the teacher's entropy added to the value.

    Parameters
    ----------
    teacher, student : (B, C) logits; rows are distributions over the last axis
    temperature : float > 0

    Returns
    -------
    scalar tensor
    """
    if teacher.shape != student.shape or teacher.dim() != 2:
        raise ValueError(
            f"teacher and student logits must be 2-D of one shape, got {tuple(teacher.shape)} "
            f"and {tuple(student.shape)}."
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    target = F.softmax(teacher / temperature, dim=1)
    return F.cross_entropy(student / temperature, target, reduction="mean") * temperature**2


def clip_distillation(
    student_image: torch.Tensor, teacher_image: torch.Tensor, teacher_text: torch.Tensor,
    scale: torch.Tensor, *, temperature: float = 2.0, image_loss: bool = True,
    text_loss: bool = True,
) -> torch.Tensor:
    """ZSCL's distillation in feature space on reference images and texts.

    With the teacher's reference-text embeddings t̂ (M, D) as the classifier,
    student logits ``L_s = s · î_s·t̂ᵀ`` and teacher logits ``L_t = s · î_t·t̂ᵀ`` (B, M):

    ``loss = [image_loss]·KD(L_t, L_s) + [text_loss]·KD(L_tᵀ, L_sᵀ)``

    with KD = :func:`distillation_loss`. The image term distils each reference
    image's distribution over the texts, the "text" term each text's distribution
    over the batch's images (ZSCL's method, "distillation in feature space"; code
    ``finetune.py`` l. 248–290 with ``--image_loss --text_loss``, weights 1, T = 2).
    As in the reference, both logits use the *teacher's* text embeddings, so this
    term sends gradient to the student's image encoder only; the student's text
    encoder learns from the classification loss alone.

    The same call is LwF (Li & Hoiem 2017) as ZSCL's ``scripts/lwf.sh`` runs it:
    teacher = the model after the previous task, reference images = a second
    stream of the current task's training images (no augmentation), reference
    texts = the current task's class prompts.

    Parameters
    ----------
    student_image : (B, D) student's L2-normalised embeddings of the reference images
    teacher_image : (B, D) teacher's embeddings of the same images
    teacher_text : (M, D) teacher's L2-normalised reference-text embeddings
    scale : scalar tensor ``logit_scale.exp()``
    temperature : float > 0
    image_loss, text_loss : bool
        Which of the two terms to include (at least one).

    Returns
    -------
    scalar tensor
    """
    if not (image_loss or text_loss):
        raise ValueError("clip_distillation needs image_loss or text_loss (or both) set.")
    if student_image.shape != teacher_image.shape:
        raise ValueError(
            f"student and teacher image embeddings differ in shape: "
            f"{tuple(student_image.shape)} vs {tuple(teacher_image.shape)}."
        )
    student = scale * student_image @ teacher_text.T
    teacher = scale * teacher_image @ teacher_text.T
    loss = student.new_zeros(())
    if image_loss:
        loss = loss + distillation_loss(teacher, student, temperature)
    if text_loss:
        loss = loss + distillation_loss(teacher.T, student.T, temperature)
    return loss


def weight_l2_loss(
    params: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor]
) -> torch.Tensor:
    """``Σ_i ‖θ_i − θ̄_i‖²`` between parameters and (detached) anchor weights.

    ZSCL's weight constraint (the "WC" of its ablations; ``--l2 1`` in
    ``scripts/ZSCL.sh``), ``helpers.py`` l. 47–51: ``F.mse_loss(θ, θ̄, reduction="sum")``
    summed over parameters, with θ̄ the weights at the start of the task.

    Parameters
    ----------
    params : sequence of tensors θ_i (any shapes)
    anchors : sequence of tensors θ̄_i, pairwise of the same shapes

    Returns
    -------
    scalar tensor
    """
    if len(params) != len(anchors):
        raise ValueError(f"{len(params)} parameters but {len(anchors)} anchors; pass one each.")
    if not params:
        raise ValueError("weight_l2_loss needs at least one parameter.")
    total = params[0].new_zeros((), dtype=torch.float32)
    for i, (p, a) in enumerate(zip(params, anchors, strict=True)):
        if p.shape != a.shape:
            raise ValueError(
                f"parameter {i} has shape {tuple(p.shape)}, its anchor {tuple(a.shape)}.")
        total = total + F.mse_loss(p, a.detach(), reduction="sum")
    return total
