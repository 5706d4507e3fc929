"""Mod-X's distillation and contrastive losses against its training loop's own statements.

Reference executed: ZixuanNi/Mod-X ``ModX_Training/continue_train_model.py``: ``cognition_align``
(ast-extracted, unchanged) and the loss block of its training loop, from the normalisation of the encoded features
(``image_features = image_features / image_features.norm(…)``) to
``all_loss = loss_train + args.alpha*loss_distill``, executed unchanged on given raw (non-unit)
features, with ``n_gpu = 1`` and a stand-in ``model`` holding the logit scale.

Ours: ``strategies.imagetext.losses.clip_loss`` (open_clip's ``ClipLoss``) and
``modx_distillation_loss``; ``all_loss = clip + α·distill`` with α = 20 (``modx_5phase.sh``).
Inputs: 12 batches (B = 8, 70, 280; D = 16, 64), old features that are the new ones plus noise
of 3 sizes, so the old model gets 1/4 … all rows right; float64 and float32. Compared:
``loss_distill``, ``loss_train``, ``all_loss`` and the gradients of ``all_loss`` w.r.t. the new
raw image and text features (before normalisation: what reaches the encoders) and the log
logit scale.
"""

from __future__ import annotations

import common

NAME = "imagetext-losses"
DESCRIPTION = "Mod-X off-diagonal distillation and contrastive loss vs its training loop"
REFERENCES = (common.Git("ZixuanNi/Mod-X", "a6a2f6c2d967a0c42d6ffe7e0efb0799733f7d82"),)


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0]) / "ModX_Training" / "continue_train_model.py"
    from types import SimpleNamespace

    import torch
    import torch.nn.functional as F

    from strategies.imagetext.losses import clip_loss, modx_distillation_loss

    align = common.load_source(src, ["cognition_align"], namespace={"torch": torch})
    g = torch.Generator().manual_seed(0)
    rows = []
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-3)):
        worst = {"loss_distill": 0.0, "loss_train": 0.0, "all_loss": 0.0, "gradients": 0.0}
        kept = []
        for B in (8, 70, 280):
            for D in (16, 64):
                for noise in (0.05, 0.5):
                    def unit(x):
                        return x / x.norm(dim=-1, keepdim=True)

                    img = torch.randn(B, D, generator=g, dtype=torch.float64)
                    txt = img + 0.8 * torch.randn(B, D, generator=g, dtype=torch.float64)
                    old_i = unit(img + noise * torch.randn(B, D, generator=g, dtype=torch.float64))
                    old_t = unit(txt + noise * torch.randn(B, D, generator=g, dtype=torch.float64))
                    img, txt = (3 * img).to(dtype), (2 * txt).to(dtype)  # raw: not unit norm
                    old_i, old_t = (0.5 * old_i).to(dtype), (4 * old_t).to(dtype)
                    log_scale = torch.tensor(2.5, dtype=dtype)
                    kept.append(int(((unit(old_i) @ unit(old_t).T).argmax(1)
                                     == torch.arange(B)).sum()))
                    grads = []
                    values = []
                    for side in ("reference", "ours"):
                        i = img.clone().requires_grad_(True)
                        t = txt.clone().requires_grad_(True)
                        s = log_scale.clone().requires_grad_(True)
                        if side == "reference":
                            ns = {"torch": torch, "F": F, "cognition_align": align.cognition_align,
                                  "image_features": i, "text_features": t,
                                  "image_features_old": old_i.clone(),
                                  "text_features_old": old_t.clone(),
                                  "n_gpu": 1, "model": SimpleNamespace(logit_scale=s),
                                  "args": SimpleNamespace(alpha=20.0)}
                            common.run_statements(
                                src, "image_features = image_features / image_features.norm",
                                "all_loss = loss_train + args.alpha", ns)
                            out = (ns["loss_distill"], ns["loss_train"], ns["all_loss"])
                        else:
                            distill = modx_distillation_loss(i, t, old_i, old_t)
                            train = clip_loss()(F.normalize(i, dim=-1), F.normalize(t, dim=-1),
                                                s.exp())
                            out = (distill, train, train + 20.0 * distill)
                        out[2].backward()
                        values.append(out)
                        grads.append(torch.cat([i.grad.flatten(), t.grad.flatten(),
                                                s.grad.flatten()]))
                    for k, a, b in zip(("loss_distill", "loss_train", "all_loss"), values[1],
                                       values[0]):
                        worst[k] = max(worst[k], common.max_diff(a, b)[0])
                    worst["gradients"] = max(worst["gradients"],
                                             common.max_diff(grads[1], grads[0])[0])
        name = str(dtype).removeprefix("torch.")
        for k, v in worst.items():
            rows.append(common.Row(
                "`modx_distillation_loss` + `clip_loss` (mod-x)" if k != "loss_train"
                else "`clip_loss` (open_clip `ClipLoss`)",
                f"`{k}` of the reference block, 12 batches (B = 8 … 280; old model right on "
                f"{min(kept)}–{max(kept)} rows)" if k != "gradients" else
                "gradients of `all_loss` w.r.t. the raw new image/text features and log scale",
                v, dtype=name, tol=tol,
                note="`log_softmax` vs the reference's `softmax().log()`"
                if name == "float32" and k != "loss_train" else ""))
    return rows
