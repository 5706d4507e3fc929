"""CTP's momentum contrast, contrastive and topology-preservation terms against ``CTP_init``/``CTP``.

Reference executed: KevinLight831/CTP ``models/clip_pretrain.py`` ``CLIP_Pretrain.CTP_init`` and
``CLIP_Pretrain.CTP``, ast-extracted unchanged and called on a stand-in ``self`` (one process):
``get_feature`` returns the given raw features L2-normalised, as its own ``get_feature`` does
(the current model's with gradients; the momentum and previous-task models' without), the queues are given (D, K) tensors, τ = 0.07 (its
``temp``). Stand-ins for parts outside the compared mathematics: the MLM terms (``get_mlm_loss``,
``distill_mlm``, ``text_mlm_encoder``) return 0 (CLIP has no text decoder: a stated deviation),
the momentum update and the enqueue are no-ops (the momentum features are given), and the
distributed helpers are their one-process values (``dist.get_rank() = 0``,
``all_gather_with_grad`` and ``concat_all_gather`` the identity).

Ours: ``clip_loss`` at scale 1/0.07 (the ``ctp`` strategy's default ``contrastive_temperature``),
``momentum_contrast_loss`` (queues given as (K, D)) and ``topology_preservation_loss``.
Compared on 8 batches (B = 8, 32; D = 16, 64; queue K = 64, 256): ``CTP_init``'s ``loss_ita``
(contrastive + momentum contrast), ``CTP``'s ``loss_ita`` (contrastive) and ``loss_ita_dis``
(momentum contrast + topology), and the gradients of their sum w.r.t. the current features.
"""

from __future__ import annotations

import common

NAME = "ctp-losses"
DESCRIPTION = "CTP contrastive, momentum-contrast and topology terms vs CTP_init / CTP"
REFERENCES = (common.Git("KevinLight831/CTP", "7baab57f23f0b9b552c1eb852a5c6a20208ae76e"),)
TAU = 0.07


class _Model:
    """The reference's ``self`` / ``momentum_model`` / ``ref_model`` on given features."""

    visual_encoder = vision_proj = text_proj = None  # read by the momentum-update pairs

    def __init__(self, image, text, image_queue=None, text_queue=None):
        import torch

        self.image, self.text, self.temp = image, text, torch.tensor(TAU, dtype=image.dtype)
        self.image_queue, self.text_queue = image_queue, text_queue

    def get_feature(self, image, caption):
        """Unit-norm projected features, as the reference's ``get_feature`` returns them."""
        from types import SimpleNamespace

        import torch.nn.functional as F

        return (F.normalize(self.image, dim=-1), F.normalize(self.text, dim=-1), None, None,
                SimpleNamespace(attention_mask=None), None)

    def get_mlm_loss(self, text, image_embeds, image_atts, device):
        from types import SimpleNamespace

        import torch

        return SimpleNamespace(loss=torch.zeros((), dtype=self.image.dtype), logits=None), None, None

    def text_mlm_encoder(self, **kwargs):
        from types import SimpleNamespace

        return SimpleNamespace(logits=None)

    def distill_mlm(self, logit_mlm, ref_logits, labels):
        import torch

        return torch.zeros((), dtype=self.image.dtype)

    def _momentum_update(self, model_pairs, momentum):
        pass

    _momentum_update_three = _momentum_update

    def _dequeue_and_enqueue(self, image_feat, text_feat):
        pass


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0]) / "models" / "clip_pretrain.py"
    from types import SimpleNamespace

    import torch
    import torch.nn.functional as F
    from torch import nn

    from strategies.imagetext.losses import (
        clip_loss,
        momentum_contrast_loss,
        topology_preservation_loss,
    )

    ref = common.load_source(src, ["CLIP_Pretrain.CTP_init", "CLIP_Pretrain.CTP"], namespace={
        "torch": torch, "nn": nn, "F": F, "dist": SimpleNamespace(get_rank=lambda: 0),
        "all_gather_with_grad": lambda x: x, "concat_all_gather": lambda x: x})
    g = torch.Generator().manual_seed(0)
    worst = {"init": 0.0, "ita": 0.0, "dis": 0.0, "grad": 0.0}

    def unit(*shape):
        return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)

    batches = 0
    for B in (8, 32):
        for D in (16, 64):
            for K in (64, 256):
                img0, txt0 = 2 * unit(B, D), 3 * unit(B, D)  # raw: not unit norm
                mom_i, mom_t = F.normalize(img0 + 0.1 * unit(B, D), dim=-1), F.normalize(
                    txt0 + 0.1 * unit(B, D), dim=-1)
                ref_i, ref_t = F.normalize(img0 + 0.3 * unit(B, D), dim=-1), F.normalize(
                    txt0 + 0.3 * unit(B, D), dim=-1)
                q_i, q_t = unit(K, D), unit(K, D)
                grads = []
                for side in ("reference", "ours"):
                    img, txt = img0.clone().requires_grad_(True), txt0.clone().requires_grad_(True)
                    if side == "reference":
                        me = _Model(img, txt, q_i.T.clone(), q_t.T.clone())
                        init = ref.CTP_init(me, img, None, _Model(mom_i, mom_t))[0]
                        ita, _, dis, _ = ref.CTP(me, img, None, _Model(ref_i, ref_t),
                                                 _Model(mom_i, mom_t))
                    else:
                        scale = torch.tensor(1 / TAU, dtype=torch.float64)
                        contrast = clip_loss()(F.normalize(img, dim=-1), F.normalize(txt, dim=-1),
                                               scale)
                        mc = momentum_contrast_loss(img, txt, mom_i, mom_t, q_i, q_t,
                                                    temperature=TAU)
                        init, ita = contrast + mc, contrast
                        dis = mc + topology_preservation_loss(img, txt, ref_i, ref_t,
                                                              temperature=TAU)
                    values = (init, ita, dis)
                    (init + ita + dis).backward()
                    grads.append((values, torch.cat([img.grad.flatten(), txt.grad.flatten()])))
                (vr, gr), (vo, go) = grads
                for k, a, b in zip(("init", "ita", "dis"), vo, vr):
                    worst[k] = max(worst[k], common.max_diff(a, b)[0])
                worst["grad"] = max(worst["grad"], common.max_diff(go, gr)[0])
                batches += 1
    what = f"{batches} batches (B = 8, 32; D = 16, 64; K = 64, 256), τ = 0.07, one process"
    return [
        common.Row("`clip_loss` + `momentum_contrast_loss` (ctp, first task)",
                   f"`CTP_init` `loss_ita`, {what}", worst["init"], tol=1e-12),
        common.Row("`clip_loss` at scale 1/τ (ctp)", f"`CTP` `loss_ita`, {what}", worst["ita"],
                   tol=1e-12),
        common.Row("`momentum_contrast_loss` + `topology_preservation_loss` (ctp)",
                   f"`CTP` `loss_ita_dis`, {what}", worst["dis"], tol=1e-12),
        common.Row("the three terms (ctp)", "gradients of their sum w.r.t. the current "
                   "model's raw (pre-normalisation) image and text features", worst["grad"], tol=1e-12),
    ]
