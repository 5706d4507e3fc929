"""Training objectives of continual vision-language pre-training on image-text pairs.

- :func:`clip_loss`: CLIP's symmetric contrastive loss (Radford et al. 2021,
  Fig. 3), open_clip's ``ClipLoss`` configured to gather features across
  ranks *with* gradients, so the global batch is the contrastive batch.
- :func:`modx_distillation_loss`: Mod-X's selective off-diagonal information
  distillation (Ni et al., ICML 2023).
- :func:`momentum_contrast_loss` and :func:`topology_preservation_loss`: the
  two terms of CTP (Zhu et al., ICCV 2023); the momentum model and feature
  queue they read are in :mod:`strategies.imagetext.momentum`.

Features are rows: ``(B, D)`` per rank. Every function L2-normalises the
features it receives, as the references do, so passing unit vectors (open_clip's
``encode_image(x, normalize=True)``) is not required.

Several ranks (``torchrun``)
----------------------------
With ``world_size > 1`` the features of all ranks are gathered with
``open_clip.loss.gather_features``: the current model's *with* gradients
(``torch.distributed.nn.all_gather``, whose backward sums every rank's gradient
into the owning rank), the frozen models' without. With the gradients averaged over
ranks (:func:`cl.runtime.distributed.all_reduce_gradients` divided by the world size),
each loss then has the gradient of the same loss computed on the global batch by a
single process (checked in ``tests/strategies/imagetext/test_losses.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss, gather_features

__all__ = [
    "OWN_COLUMN_FILL",
    "clip_loss",
    "modx_distillation_loss",
    "momentum_contrast_loss",
    "topology_preservation_loss",
]

#: CTP masks a query's own column of an intra-modal similarity with this value
#: before dividing by the temperature (``scatter(1, mask_index, -1000)``).
OWN_COLUMN_FILL = -1000.0


def _check_pair(image: torch.Tensor, text: torch.Tensor, what: str) -> None:
    if image.ndim != 2 or image.shape != text.shape:
        raise ValueError(f"{what} image and text features must both be (B, D), got "
                         f"{tuple(image.shape)} and {tuple(text.shape)}.")


def _check_world(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")


def _gather(
    image: torch.Tensor, text: torch.Tensor, rank: int, world_size: int, with_grad: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global-batch features (W*B, D), rank order; the local ones when ``world_size == 1``."""
    if world_size == 1:
        return image, text
    return gather_features(image, text, local_loss=True, gather_with_grad=with_grad,
                           rank=rank, world_size=world_size)


def clip_loss(*, rank: int = 0, world_size: int = 1, local_loss: bool = True) -> ClipLoss:
    """CLIP's contrastive loss over the global batch: open_clip's ``ClipLoss``, reused as is.

    ``loss = (CE(s * I T^T, y) + CE(s * T I^T, y)) / 2`` with ``s`` the logit
    scale (Radford et al. 2021, Fig. 3). ``gather_with_grad=True`` is what makes
    the gradient exact across ranks; ``local_loss=True`` computes only this
    rank's rows against the global columns, the same gradient at 1/W of the
    cost (open_clip's recommended setting).

    Parameters
    ----------
    rank, world_size : int
        This process's rank and the number of processes.
    local_loss : bool
        Rows of this rank only (True) or the whole global matrix on every rank.

    Returns
    -------
    open_clip.loss.ClipLoss
        Call it as ``loss(image_features, text_features, logit_scale)`` with
        unit-norm (B, D) features and ``logit_scale = model.logit_scale.exp()``.
    """
    _check_world(rank, world_size)
    return ClipLoss(local_loss=local_loss, gather_with_grad=True, cache_labels=True,
                    rank=rank, world_size=world_size)


def _selective_kl(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``sum_i [argmax_j old[i, j] = i] * KL(softmax(old[i]) || softmax(new[i]))``."""
    diagonal = torch.arange(old.shape[0], device=old.device)
    trusted = old.argmax(dim=1) == diagonal
    log_old, log_new = F.log_softmax(old, dim=1), F.log_softmax(new, dim=1)
    kl = (log_old.exp() * (log_old - log_new)).sum(dim=1)
    return kl[trusted].sum()


def modx_distillation_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    old_image_features: torch.Tensor,
    old_text_features: torch.Tensor,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> torch.Tensor:
    """Mod-X's off-diagonal information distillation (Ni et al., ICML 2023).

    The "Spatial Alignment" module of Mod-X (its Fig. 5): on the *current*
    batch, the new model's image-text contrastive matrix ``M = I T^T`` (cosine
    similarities, no temperature) is pulled row by row towards the old model's
    ``M_old``, whole rows including the off-diagonal entries, with a KL
    divergence; rows where the old model's top match is not the paired caption
    (``argmax_j M_old[i, j] != i``, its "wrong cognition") are left out. With
    ``KL_rows(A, B) = sum_i [argmax_j B[i, j] = i] KL(softmax(B[i]) || softmax(A[i]))``::

        loss = ( KL_rows(I T^T, I_old T_old^T) + KL_rows(T I^T, T_old I_old^T) ) / 2

    summed (not averaged) over the rows of the global batch; Mod-X trains with
    ``CLIP loss + alpha * loss`` (``alpha = 20`` in ``modx_5phase.sh``).

    As ZixuanNi/Mod-X ``ModX_Training/continue_train_model.py`` (``cognition_align``,
    ``F.kl_div(..., reduction='sum')``): the reference overwrites an untrusted
    old row with the new row, whose KL term and gradient are then exactly 0;
    leaving the row out gives the same value and gradient.

    Parameters
    ----------
    image_features, text_features : torch.Tensor, shape (B, D)
        The model being trained, on this rank's pairs (paired by row).
    old_image_features, old_text_features : torch.Tensor, shape (B, D)
        The model of the previous phase on the same pairs (no gradient needed).
    rank, world_size : int
        Under ``torchrun``: the matrices are computed over the gathered global
        batch on every rank (as the reference's DataParallel does on one device).

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    _check_pair(image_features, text_features, "current")
    _check_pair(old_image_features, old_text_features, "old")
    if old_image_features.shape != image_features.shape:
        raise ValueError("old and current features must have the same shape, got "
                         f"{tuple(old_image_features.shape)} and {tuple(image_features.shape)}.")
    _check_world(rank, world_size)
    img, txt = _gather(F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1),
                       rank, world_size, with_grad=True)
    with torch.no_grad():
        old_img, old_txt = _gather(F.normalize(old_image_features, dim=-1),
                                   F.normalize(old_text_features, dim=-1),
                                   rank, world_size, with_grad=False)
    i2t = _selective_kl(img @ txt.T, old_img @ old_txt.T)
    t2i = _selective_kl(txt @ img.T, old_txt @ old_img.T)
    return (i2t + t2i) / 2


def momentum_contrast_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    momentum_image_features: torch.Tensor,
    momentum_text_features: torch.Tensor,
    image_queue: torch.Tensor,
    text_queue: torch.Tensor,
    *,
    temperature: float = 0.07,
    rank: int = 0,
    world_size: int = 1,
) -> torch.Tensor:
    """CTP's compatible momentum contrast (Zhu et al., ICCV 2023): contrast against the
    momentum model's features of the batch and a queue of earlier ones.

    With ``I, T`` the current model's features, ``I_m, T_m`` the momentum model's on
    the same pairs and ``Q_I, Q_T`` the queues (MoCo, He et al. 2020; ALBEF, Li et
    al. 2021), ``y_i = i``::

        loss = ( CE([I T_m^T, I Q_T^T] / tau, y) + CE([T I_m^T, T Q_I^T] / tau, y) ) / 2

    The momentum model is what makes this CTP's: after the first task it is
    updated towards both the current and the previous-task model
    (:func:`strategies.imagetext.momentum.compatible_momentum_update`), and it
    is updated *before* its features are computed at each step.

    As KevinLight831/CTP ``models/clip_pretrain.py`` (``CLIP_Pretrain.CTP``,
    ``loss_i2t_md``/``loss_t2i_md``; one-hot ``sim_targets``). Under ``torchrun``
    the momentum features of every rank are gathered (no gradient), so the keys
    are the global batch and a run gives the same loss with any number of
    processes; the reference contrasts each GPU's queries with that GPU's momentum
    features only (and the queue, which holds every rank's): a deliberate
    deviation, identical with one process.

    Parameters
    ----------
    image_features, text_features : torch.Tensor, shape (B, D)
        The model being trained.
    momentum_image_features, momentum_text_features : torch.Tensor, shape (B, D)
        The momentum model on the same pairs (no gradient).
    image_queue, text_queue : torch.Tensor, shape (K, D)
        Unit-norm queued momentum features, before this batch is enqueued.
    temperature : float
        ``tau``; CTP fixes it at 0.07.
    rank, world_size : int
        This process's rank and the number of processes (momentum keys gathered).

    Returns
    -------
    torch.Tensor
        Scalar (mean over the rows of this rank).
    """
    _check_pair(image_features, text_features, "current")
    _check_pair(momentum_image_features, momentum_text_features, "momentum")
    _check_pair(image_queue, text_queue, "queue")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    _check_world(rank, world_size)
    img, txt = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    with torch.no_grad():
        mom_img, mom_txt = _gather(F.normalize(momentum_image_features, dim=-1),
                                   F.normalize(momentum_text_features, dim=-1),
                                   rank, world_size, with_grad=False)
        keys_t = torch.cat([mom_txt, text_queue])
        keys_i = torch.cat([mom_img, image_queue])
    targets = torch.arange(img.shape[0], device=img.device) + img.shape[0] * rank
    i2t = F.cross_entropy(img @ keys_t.T / temperature, targets)
    t2i = F.cross_entropy(txt @ keys_i.T / temperature, targets)
    return (i2t + t2i) / 2


def _kl_batchmean(new_logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """``mean_i KL(softmax(ref[i]) || softmax(new[i]))`` (``nn.KLDivLoss(reduction='batchmean')``)."""
    log_ref = F.log_softmax(ref_logits, dim=1)
    return (log_ref.exp() * (log_ref - F.log_softmax(new_logits, dim=1))).sum(dim=1).mean()


def topology_preservation_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    ref_image_features: torch.Tensor,
    ref_text_features: torch.Tensor,
    *,
    temperature: float = 0.07,
    rank: int = 0,
    world_size: int = 1,
) -> torch.Tensor:
    """CTP's topology preservation (Zhu et al., ICCV 2023): keep the similarity
    distributions of the previous-task model, across and within modalities.

    For each query row, the softmax over the global batch of its similarities
    at temperature ``tau`` is pulled towards the previous-task (reference)
    model's with a KL divergence, averaged over rows. Cross-modal: ``I T^T`` and
    ``T I^T``; intra-modal: ``I I^T`` and ``T T^T`` with each row's own column set
    to -1000 before dividing by ``tau`` (a zero weight), for both models::

        loss = ( KL(I T^T) + KL(T I^T) ) / 2 + ( KL(I I^T) + KL(T T^T) ) / 2

    As KevinLight831/CTP ``models/clip_pretrain.py`` (``CLIP_Pretrain.CTP``:
    ``loss_ita_dis_i2t``, ``loss_ita_dis_t2i``, ``loss_cos_i``, ``loss_cos_t``, with
    ``nn.KLDivLoss(reduction='batchmean')``): rows of this rank, columns of the
    global batch.

    Parameters
    ----------
    image_features, text_features : torch.Tensor, shape (B, D)
        The model being trained, on this rank's pairs.
    ref_image_features, ref_text_features : torch.Tensor, shape (B, D)
        The frozen previous-task model on the same pairs.
    temperature : float
        ``tau``; CTP fixes it at 0.07.
    rank, world_size : int
        This process's rank and the number of processes.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    _check_pair(image_features, text_features, "current")
    _check_pair(ref_image_features, ref_text_features, "reference")
    if ref_image_features.shape != image_features.shape:
        raise ValueError("reference and current features must have the same shape, got "
                         f"{tuple(ref_image_features.shape)} and {tuple(image_features.shape)}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    _check_world(rank, world_size)
    img, txt = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    all_img, all_txt = _gather(img, txt, rank, world_size, with_grad=True)
    with torch.no_grad():
        ref_img = F.normalize(ref_image_features, dim=-1)
        ref_txt = F.normalize(ref_text_features, dim=-1)
        all_ref_img, all_ref_txt = _gather(ref_img, ref_txt, rank, world_size, with_grad=False)
    batch = img.shape[0]
    own = torch.arange(batch, device=img.device) + batch * rank

    def masked(sim: torch.Tensor) -> torch.Tensor:
        return sim.index_put((torch.arange(batch, device=sim.device), own),
                             sim.new_tensor(OWN_COLUMN_FILL))

    cross = (_kl_batchmean(img @ all_txt.T / temperature, ref_img @ all_ref_txt.T / temperature)
             + _kl_batchmean(txt @ all_img.T / temperature, ref_txt @ all_ref_img.T / temperature))
    intra = (_kl_batchmean(masked(img @ all_img.T) / temperature,
                           masked(ref_img @ all_ref_img.T) / temperature)
             + _kl_batchmean(masked(txt @ all_txt.T) / temperature,
                             masked(ref_txt @ all_ref_txt.T) / temperature))
    return cross / 2 + intra / 2
