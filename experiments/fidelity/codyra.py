"""CoDyRA (``codyra``) against the authors' code: proximal step, κ schedule, learning rate, loss,
gated layer, merge, and the LoRA attention on toy-clip's towers.

Reference: Artificer-AI-Lab/CoDyRA at the pinned commit (Lu et al., arXiv 2412.01004). Its own
source is executed on the same inputs as ours:

* ``loralib/codyra.py``: imported unmodified (``codyra_Linear``: forward, ``increment_task``).
* ``models/codyra.py``: ``codyra_Transformer``, ``codyra_ResidualAttentionBlock``,
  ``PlainMultiheadAttentionLoRA`` and ``apply_lora`` extracted unmodified, run with ``lora`` bound
  to the imported ``loralib/codyra.py`` (the file's other imports: ``utils``, tensorboard and
  open_clip's factory, are not needed by them). Statement ranges of ``train_model`` run as
  written: the κ grid (``lambdas = np.linspace(…)`` … ``threshold = lambdas[threshold_id]``),
  the step length (``dense_iters = …`` … ``lambda_step_iters = …``), the per-iteration κ update
  (``if lambda_step_iters > 0:`` … ``logging.info(…)``), the proximal step (``if prune:`` … the
  last ``p.data[…] = 0.0``) and the loss (``logits_per_image = …`` through ``# update``). The
  only change: every ``.cuda()`` of the loss lines is removed (CPU).
* ``utils.py``: ``assign_learning_rate``, ``_warmup_lr``, ``cosine_lr`` extracted unmodified,
  called as ``train_model`` does (``warmup_length=0``, ``scheduler(iteration)`` before each step).

Ours is called through the strategy where it has a path: ``RankSelectiveLoRA._after_step`` (the
proximal step with :func:`kappa_at`), ``_lr_factor`` under the ``LambdaLR`` of the training loop,
``_inject`` and ``_unload(merge=True)`` + ``restore_attention`` on toy-clip; and
:func:`clip_loss`, :func:`soft_threshold`, :class:`GatedLoRALinear`, :class:`ExplicitAttention`.

Inputs the reference needs as it was written for: its ``requirements.txt`` pins open_clip 2.12,
whose ``nn.MultiheadAttention`` is sequence-first; open_clip 3.x builds them ``batch_first=True``,
and ``PlainMultiheadAttentionLoRA`` does not transpose its output back in that case. The
reference's towers are therefore built from toy-clip's blocks with each attention rebuilt
sequence-first (same weights) and fed (L, N, D), ours (N, L, D). Its layers are created in
float32 (as it does) from float32 weights, then converted to float64 with ours; gates, A and B are
then set equal on both sides (B and g random, some g exactly 0, so every path is exercised).
"""

from __future__ import annotations

import common

NAME = "codyra"
DESCRIPTION = "CoDyRA proximal step, κ schedule, lr, loss, gated layer, merge and attention"
REFERENCES = (common.Git("Artificer-AI-Lab/CoDyRA", "c1691e4c4c8a331acaaeb7dfa5e37bcb974cf0c8"),)


def _reference(src):
    """The reference's pieces: (loralib.codyra module, models.codyra defs, cosine_lr)."""
    import copy
    import logging
    import typing

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.nn.parameter import Parameter

    lora = common.import_file(src / "loralib" / "codyra.py", "fidelity_ref_codyra_loralib")
    models = common.load_source(
        src / "models" / "codyra.py",
        ["codyra_Transformer", "codyra_ResidualAttentionBlock", "PlainMultiheadAttentionLoRA",
         "apply_lora"],
        namespace={"torch": torch, "nn": nn, "F": F, "Optional": typing.Optional,
                   "copy": copy, "lora": lora, "Parameter": Parameter, "logging": logging,
                   "np": np})
    utils = common.load_source(src / "utils.py", ["assign_learning_rate", "_warmup_lr",
                                                   "cosine_lr"], namespace={"np": np})
    return lora, models, utils.cosine_lr


def _ref_block(src, first, last, namespace, replace=None):
    """``train_model``'s lines from ``first`` to ``last`` run in ``namespace``."""
    return common.run_statements(src / "models" / "codyra.py", first, last, namespace, replace)


# ------------------------------------------------------------------------------ proximal step


def _step_rows(src, lora):
    import numpy as np
    import torch
    from torch import nn

    from strategies.lora.gated import soft_threshold

    rows = []
    kappas = np.linspace(0, 0.005, 50)[[1, 17, 49]]  # grid points as the reference's threshold
    worst_code = {torch.float64: 0.0, torch.float32: 0.0}
    worst_paper, differ, total = 0.0, 0, 0
    g = torch.Generator().manual_seed(0)
    for kappa in kappas:
        k = float(kappa)
        edges = torch.tensor([0.0, k, -k, 2 * k, -2 * k, 1.5 * k, -1.5 * k, 0.5 * k, -0.5 * k,
                              3 * k, -3 * k], dtype=torch.float64)
        for dtype in (torch.float64, torch.float32):
            x = torch.cat([edges, 4 * k * torch.randn(989, generator=g, dtype=torch.float64)])
            x = x.to(dtype)
            layer = lora.codyra_Linear(4, 4, r=x.numel())
            layer.gate = nn.Parameter(x.view(1, -1).clone())
            ns = {"prune": True, "iteration": 1, "dense_iters": 0, "threshold": kappa,
                  "model": nn.Module(), "lora": lora}
            ns["model"].module = nn.Sequential(layer)
            _ref_block(src, "if prune:", "p.data[abs(p.data) < threshold] = 0.0", ns)
            ours = soft_threshold(x, k, "code")
            worst_code[dtype] = max(worst_code[dtype], common.max_diff(ours, layer.gate[0])[0])
            if dtype == torch.float64:
                paper = soft_threshold(x, k, "paper")
                xn = x.numpy()
                written = np.sign(xn) * np.maximum(np.abs(xn) - k, 0.0)  # T_κ, the paper's
                worst_paper = max(worst_paper, common.max_diff(paper, written)[0])
                differ += int((paper != layer.gate[0]).sum())
                total += x.numel()
    for dtype, worst in worst_code.items():
        rows.append(common.Row(
            '`soft_threshold(rule="code")`', "vs the code's in-place proximal step (3 κ of its "
            "grid, 1,000 gates each incl. g = 0, ±κ/2, ±κ, ±1.5κ, ±2κ, ±3κ)", worst,
            dtype=str(dtype).removeprefix("torch."), tol=0))
    rows.append(common.Row(
        '`soft_threshold(rule="paper")`', "vs T_κ(g) = sign(g)·max(abs(g) − κ, 0) written out "
        "(same gates)", worst_paper, tol=0))
    rows.append(common.Row(
        '`soft_threshold(rule="paper")`', "gates differing from the code's step (same gates)",
        differ, dtype="count", tol=float("inf"),
        note=f"stated deviation: of {total}; the code zeroes magnitudes in (κ, 2κ) and keeps "
        "magnitude κ"))
    return rows


# --------------------------------------------------------------------------- schedule and lr


def _schedule(src, lora, total, dense, steps, max_kappa, rule):
    """Run ``total`` iterations of the reference's κ schedule and proximal step and of
    ``RankSelectiveLoRA._after_step`` on the same gates, with the same perturbation per step.

    Returns (max |κ ours − κ ref|, max |g ours − g ref| over all steps, nonzero gates ours, ref).
    """
    import logging
    import types

    import numpy as np
    import torch
    from torch import nn

    from strategies.lora.codyra import RankSelectiveLoRA
    from strategies.lora.gated import GatedLoRALinear

    g = torch.Generator().manual_seed(total)
    strategy = RankSelectiveLoRA(iterations=total, max_kappa=max_kappa, kappa_steps=steps,
                                 dense_fraction=dense, threshold_rule=rule)
    ref_layers, ours = [], {}
    for i, (d_in, d_out, r) in enumerate(((8, 8, 16), (12, 6, 32))):
        start = 3 * max_kappa * torch.randn(r, generator=g, dtype=torch.float64)
        layer = lora.codyra_Linear(d_in, d_out, r=r)
        layer.gate = nn.Parameter(start.view(1, -1).clone())
        ref_layers.append(layer)
        ours[f"l{i}"] = GatedLoRALinear(nn.Linear(d_in, d_out).double(), r)
        with torch.no_grad():
            ours[f"l{i}"].gate.copy_(start)
    strategy._layers = ours
    ns = {"np": np, "logging": logging, "lora": lora, "prune": True, "total_iterations": total,
          "args": types.SimpleNamespace(max_kappa=max_kappa, lambda_num=steps,
                                        dense_iters=dense)}
    ns["model"] = nn.Module()
    ns["model"].module = nn.Sequential(*ref_layers)
    _ref_block(src, "lambdas = np.linspace(0, args.max_kappa", "threshold = lambdas[threshold_id]",
               ns)
    _ref_block(src, "dense_iters = args.dense_iters*total_iterations", "lambda_step_iters = int(",
               ns)
    worst_kappa = worst_gate = 0.0
    for it in range(total):
        ns["iteration"] = it
        _ref_block(src, "if lambda_step_iters > 0:", 'logging.info(f"Lambda: {threshold}")', ns)
        with torch.no_grad():  # the same "optimiser step" on both sides
            for layer, mine in zip(ref_layers, ours.values(), strict=True):
                step = max_kappa * torch.randn(layer.gate.shape[1], generator=g,
                                               dtype=torch.float64)
                layer.gate.data += step.view(1, -1)
                mine.gate += step
        _ref_block(src, "if prune:", "p.data[abs(p.data) < threshold] = 0.0", ns)
        strategy._after_step(it, total)
        applied = float(ns["threshold"]) if it > ns["dense_iters"] else 0.0  # the prune guard
        worst_kappa = max(worst_kappa, abs(applied - strategy_kappa(strategy, it, total)))
        for layer, mine in zip(ref_layers, ours.values(), strict=True):
            worst_gate = max(worst_gate, common.max_diff(mine.gate, layer.gate[0])[0])
    kept = sum(int(torch.count_nonzero(m.gate)) for m in ours.values())
    kept_ref = sum(int(torch.count_nonzero(layer.gate)) for layer in ref_layers)
    return worst_kappa, worst_gate, kept, kept_ref


def strategy_kappa(strategy, iteration, total):
    """κ the strategy's ``_after_step`` uses after step ``iteration``."""
    from strategies.lora.gated import kappa_at

    o = strategy.options
    return kappa_at(iteration, total, o.max_kappa, steps=o.kappa_steps,
                    dense_fraction=o.dense_fraction)


def _schedule_rows(src, lora, cosine_lr):
    import torch

    from strategies.lora.codyra import RankSelectiveLoRA

    rows = []
    configs = ((500, 0.5, 50, 0.005), (1000, 0.5, 50, 7e-4), (333, 0.3, 7, 0.01))
    wk = wg = 0.0
    for total, dense, steps, max_kappa in configs:
        k, gd, _, _ = _schedule(src, lora, total, dense, steps, max_kappa, "code")
        wk, wg = max(wk, k), max(wg, gd)
    label = "T, dense, steps, κ_max = " + "; ".join(f"{t}, {d}, {s}, {m:g}"
                                                    for t, d, s, m in configs)
    rows.append(common.Row("`kappa_at` (`RankSelectiveLoRA._after_step`)",
                           f"κ after every step vs the code's schedule ({label})", wk, tol=0))
    rows.append(common.Row('`RankSelectiveLoRA._after_step` (`threshold_rule="code"`)',
                           "2 layers' gates after every step, same perturbation per step, vs the "
                           "code's κ schedule and proximal step (same runs)", wg, tol=0))
    _, gd, kept, kept_ref = _schedule(src, lora, 500, 0.5, 50, 0.005, "paper")
    rows.append(common.Row('`RankSelectiveLoRA._after_step` (`threshold_rule="paper"`)',
                           "gates after every step vs the code (T = 500)", gd, tol=float("inf"),
                           note=f"stated deviation (T_κ): {kept} gates kept, code {kept_ref} of 48"))
    k, gd, kept, kept_ref = _schedule(src, lora, 60, 0.5, 50, 0.005, "code")
    rows.append(common.Row("`kappa_at`", "κ after every step vs the code, T = 60 (T − dense < "
                           "steps)", k, tol=float("inf"),
                           note=f"stated deviation: the code never prunes here ({kept_ref} of 48 "
                           f"kept), we step κ every iteration ({kept} kept)"))

    # learning rate: the training loop's LambdaLR with _lr_factor vs utils.cosine_lr
    worst = 0.0
    for total, lr in ((500, 5e-4), (1000, 1e-3)):
        strategy = RankSelectiveLoRA(iterations=total, lr=lr)
        p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        ours_opt = strategy._optimizer([{"params": [p]}], lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            ours_opt, lambda i, t=total, s=strategy: s._lr_factor(i, t))
        ref_opt = torch.optim.AdamW([torch.nn.Parameter(p.detach().clone())], lr=lr,
                                    betas=(0.9, 0.9999))
        scheduler = cosine_lr(ref_opt, lr, 0, total)
        for it in range(total):
            scheduler(it)
            worst = max(worst, abs(ours_opt.param_groups[0]["lr"] - ref_opt.param_groups[0]["lr"])
                        / lr)
            ours_opt.step()  # no gradients: only the step count moves, as in the loop's order
            sched.step()
    rows.append(common.Row("`cosine_factor` (`_lr_factor` under the loop's `LambdaLR`)",
                           "learning rate at every step ÷ base lr vs `utils.cosine_lr` "
                           "(T = 500, 1000; warm-up 0 as the runner)", worst, tol=1e-15))
    return rows


# ---------------------------------------------------------------------------------------- loss


def _loss_rows(src):
    import math
    import types

    import torch
    import torch.nn.functional as F

    from strategies.lora.base import clip_loss

    g = torch.Generator().manual_seed(3)

    def unit(*shape):
        x = torch.randn(*shape, generator=g)
        return x / x.norm(dim=-1, keepdim=True)

    def reference(out, embeddings, labels, seen, encoder, ls=0.0):
        ns = {"torch": torch, "F": F, "out": out, "embeddings": embeddings,
              "labels": labels + len(seen), "seen_classes": seen,
              "logit_scale": torch.nn.Parameter(torch.tensor(math.log(100.0))),
              "args": types.SimpleNamespace(ls=ls, target_encoder=encoder)}
        _ref_block(src, "logits_per_image = logit_scale.exp() * out @ embeddings.t()", "# update",
                   ns, replace={".cuda()": ""})
        return ns["loss"].detach()

    scale = torch.tensor(math.log(100.0)).exp()
    rows = []
    B, C, S, D = 32, 10, 15, 24
    worst = worst_rel = 0.0
    for encoder, t2i, ls in (("vision", True, 0.0), ("all", True, 0.0), ("text", False, 0.1)):
        out, text, y = unit(B, D), unit(C, D), torch.randint(0, C, (B,), generator=g)
        ref = reference(out, text, y, [], encoder, ls)
        ours = clip_loss(out, text, y, scale, text_to_image=t2i, label_smoothing=ls)
        d, r = common.max_diff(ours, ref)
        worst, worst_rel = max(worst, d), max(worst_rel, r)
    rows.append(common.Row("`clip_loss` (first task)", f"vs the code's loss, target_encoder "
                           f"vision / all (`text_to_image=True`) and text (label smoothing 0.1); "
                           f"B = {B}, C = {C}", worst, worst_rel, dtype="float32", tol=1e-6,
                           tol_on="rel",
                           note="ours computes in float32 by design"))

    out, seen, text = unit(B, D), unit(S, D), unit(C, D)
    y = torch.randint(0, C, (B,), generator=g)
    ref = float(reference(out, torch.cat([seen, text]), y, ["p"] * S, "vision"))
    i2t = float(clip_loss(out, text, y, scale))
    t2i = float(clip_loss(out, text, y, scale, text_to_image=True)) - i2t
    d = abs(i2t + C / (S + C) * t2i - ref)
    rows.append(common.Row("`clip_loss` (later task, label space = current task)",
                           f"vs the code with S = {S} earlier classes masked: image→text + "
                           f"C/(S + C)·text→image", d, d / abs(ref), dtype="float32", tol=1e-6,
                           tol_on="rel",
                           note="stated deviation: ours is image→text + text→image (the mean "
                           "over the label space's rows)"))
    space = torch.cat([seen, text])
    cil = float(clip_loss(out, space, y + S, scale, text_to_image=True))
    rows.append(common.Row("`clip_loss` (later task, class-incremental label space)",
                           "vs the code (which trains on the current task's classes)",
                           abs(cil - ref), dtype="float32", tol=float("inf"),
                           note="stated deviation: our runner's label space holds the S earlier "
                           "classes unmasked"))
    return rows


# ------------------------------------------------------------------- gated layer and its merge


def _layer_rows(lora):
    import torch
    from torch import nn

    from strategies.lora.gated import GatedLoRALinear

    g = torch.Generator().manual_seed(4)
    fwd = merge = 0.0
    for d_in, d_out, r in ((16, 24, 4), (64, 32, 8), (8, 8, 1)):
        ref = lora.codyra_Linear(d_in, d_out, r=r, dtype=torch.float64)
        base = nn.Linear(d_in, d_out, dtype=torch.float64)
        with torch.no_grad():
            base.weight.copy_(ref.weight)
            base.bias.copy_(ref.bias)
        ours = GatedLoRALinear(base, r)
        for task in range(2):
            with torch.no_grad():
                gate = torch.randn(r, generator=g, dtype=torch.float64)
                gate[: r // 2] = 0.0 if task == 0 else gate[: r // 2]
                if r == 1 and task == 1:
                    gate.zero_()  # nothing kept: the code skips, ours adds a zero ΔW
                ref.lora_A.copy_(torch.randn(r, d_in, generator=g, dtype=torch.float64))
                ref.lora_B.copy_(torch.randn(d_out, r, generator=g, dtype=torch.float64))
                ref.gate = nn.Parameter(gate.view(1, -1).clone())
                ours.lora_A.copy_(ref.lora_A)
                ours.lora_B.copy_(ref.lora_B)
                ours.gate.copy_(gate)
                x = torch.randn(5, 7, d_in, generator=g, dtype=torch.float64)
                fwd = max(fwd, common.max_diff(ours(x), ref(x)[0])[0])
                ref.increment_task()
                merged = ours.merged()
                merge = max(merge, common.max_diff(merged.weight, ref.weight)[0])
                merge = max(merge, common.max_diff(merged(x), ref(x)[0])[0])
            ours = GatedLoRALinear(merged, r)
    rows = [common.Row("`GatedLoRALinear.forward`", "vs `codyra_Linear.forward` (3 shapes × 2 "
                       "tasks, half the gates 0 in task 1)", fwd, tol=1e-14),
            common.Row("`GatedLoRALinear.merged` (per task)", "merged W and output vs "
                       "`codyra_Linear.increment_task` after each of 2 tasks (incl. all gates 0)",
                       merge, tol=1e-14)]
    return rows


# ------------------------------------------------------------------- attention and the towers


def _sequence_first(transformer):
    """A copy of an open_clip tower's transformer with every attention sequence-first (the
    layout of open_clip 2.12, which the reference pins)."""
    import copy

    from torch import nn

    t = copy.deepcopy(transformer)
    for block in t.resblocks:
        old = block.attn
        new = nn.MultiheadAttention(old.embed_dim, old.num_heads, dropout=old.dropout,
                                    batch_first=False)
        new.load_state_dict(old.state_dict())
        block.attn = new
    return t


def _tower_rows(lora, models):
    import copy

    import torch

    from cl.models.backbones import create_backbone
    from strategies.lora import TARGETS
    from strategies.lora.codyra import RankSelectiveLoRA
    from strategies.lora.placement import prepare, restore_attention

    rank = 4
    base = create_backbone("toy-clip").model.eval()
    cfg = {"rank": rank, "target_modules": ["q_proj", "k_proj", "v_proj", "out_proj", "ffn_in",
                                            "ffn_out"]}
    towers = {"visual.transformer": ("visual.", None), "transformer": ("", base.attn_mask)}
    refs = {}
    for prefix, (encoder, _) in towers.items():
        t = models.codyra_Transformer(_sequence_first(base.get_submodule(prefix)))
        models.apply_lora(cfg, t, encoder=encoder)
        refs[prefix] = t.double().eval()
    model = copy.deepcopy(base).double().eval()
    strategy = RankSelectiveLoRA(rank=rank)
    names = prepare(model, "both", TARGETS)
    strategy._inject(model, names, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, layer in strategy._layers.items():
            prefix = "visual.transformer" if name.startswith("visual.") else "transformer"
            block, _, rest = name.removeprefix(prefix + ".").partition(".")[2].partition(".")
            ref = refs[prefix].resblocks[int(block)].get_submodule(rest)
            layer.lora_B.copy_(0.1 * torch.randn(layer.lora_B.shape, generator=g,
                                                 dtype=torch.float64))
            layer.gate[torch.rand(rank, generator=g) < 0.3] = 0.0
            ref.lora_A.copy_(layer.lora_A)
            ref.lora_B.copy_(layer.lora_B)
            ref.gate = torch.nn.Parameter(layer.gate.view(1, -1).clone())

    def compare():
        worst = {}
        with torch.no_grad():
            for prefix, (_, mask) in towers.items():
                width = base.get_submodule(prefix).width
                x = torch.randn(3, 20 if mask is not None else 17, width, generator=g,
                                dtype=torch.float64)
                m = None if mask is None else mask.double()
                ours = model.get_submodule(prefix)(x, attn_mask=m)
                ref, _ = refs[prefix](x.permute(1, 0, 2), attn_mask=m)
                worst[prefix] = common.max_diff(ours, ref.permute(1, 0, 2))
        return worst

    rows = []
    n = len(names)
    for prefix, (d, r) in compare().items():
        tower = "vision" if prefix.startswith("visual") else "text (causal mask)"
        rows.append(common.Row("`ExplicitAttention` + `GatedLoRALinear` (`_inject`)",
                               f"toy-clip {tower} tower vs `PlainMultiheadAttentionLoRA` + "
                               f"`codyra_Linear` blocks (all 6 targets, r = {rank})", d, r,
                               tol=1e-12))
    strategy._unload(model, merge=True)
    restore_attention(model)
    for t in refs.values():
        for m in t.modules():
            if isinstance(m, lora.codyra_Linear):
                m.increment_task()
    for prefix, (d, r) in compare().items():
        tower = "vision" if prefix.startswith("visual") else "text"
        rows.append(common.Row("merge (`_unload(merge=True)` + `restore_attention`)",
                               f"toy-clip {tower} tower, plain open_clip blocks vs the code after "
                               f"`increment_task` ({n} layers, both towers)", d, r, tol=1e-12))
    return rows


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0])
    import torch

    torch.manual_seed(0)  # the reference's layers draw their initial A and g from it
    lora, models, cosine_lr = _reference(src)
    return (_step_rows(src, lora) + _schedule_rows(src, lora, cosine_lr) + _loss_rows(src)
            + _layer_rows(lora) + _tower_rows(lora, models))
