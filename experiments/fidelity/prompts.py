"""L2P, DualPrompt and CODA-Prompt against their reference code, on identical inputs (float64).

References executed (their own source, extracted with :func:`common.load_source`):

* ``JH-LEE-KR/l2p-pytorch``: ``prompt.py:Prompt`` (pool, top-k / batchwise selection,
  ``reduce_sim``, prompted embedding), ``vision_transformer.py:VisionTransformer.forward_head``
  (``head_type='prompt'``), ``engine.py:train_one_epoch`` (``train_mask``, loss).
* ``JH-LEE-KR/dualprompt-pytorch``: ``prompt.py:EPrompt``, ``attention.py:PreT_Attention``,
  ``engine.py:train_one_epoch``.
* ``GT-RIPL/CODA-Prompt``: ``models/zoo.py:CodaPrompt`` (with ``tensor_prompt``,
  ``ortho_penalty``), ``models/vit.py:Attention``, ``learners/prompt.py:Prompt.update_model``
  with ``learners/default.py:NormalNN.criterion``.

Changes to the extracted text (each must match, or the group fails):
``torch.cuda.synchronize()`` → ``pass`` and the final ``print`` → ``pass`` in both
``train_one_epoch`` (CPU run); ``torch.eye(t.shape[0]).cuda()`` → ``torch.eye(t.shape[0],
dtype=t.dtype)`` in ``ortho_penalty`` (CPU, float64); for the "permute fix" rows of EPrompt,
``batched_prompt_raw.reshape(`` → ``batched_prompt_raw.permute(0, 2, 1, 3, 4, 5, 6).reshape(``
(dualprompt-pytorch issue #8; the unpatched reshape is measured in its own row). Stand-ins
(not reference code): the engines' ``utils.MetricLogger`` / ``accuracy`` / optimiser, and
models that return fixed logits, so that ``train_one_epoch`` and ``update_model`` run one
batch and their loss is read back. The reference ViTs are timm ViTs; the prompted-forward
rows run open_clip's blocks (``cl-tiny-vit``, 2 blocks, width 64, 2 heads) with the
reference attention modules on the block's own weights in place of ours.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import common

NAME = "prompts"
DESCRIPTION = "L2P / DualPrompt / CODA-Prompt: selection, losses, prompted forward, masked logits"
L2P_REF = common.Git("JH-LEE-KR/l2p-pytorch", "f7bc994365f51221e059b7be18c9b08c369444e6")
DUAL_REF = common.Git("JH-LEE-KR/dualprompt-pytorch", "7eb457d988409a6abf97af2b121ffa62dd4b498a")
CODA_REF = common.Git("GT-RIPL/CODA-Prompt", "6417d4f68754be68b697c7ca2323ee61e791e1a3")
REFERENCES = (L2P_REF, DUAL_REF, CODA_REF)
FIX = {"batched_prompt_raw.reshape(": "batched_prompt_raw.permute(0, 2, 1, 3, 4, 5, 6).reshape("}


def _row(method, compared, ours, ref, tol, note=""):
    d, r = common.max_diff(ours, ref)
    return common.Row(method=method, compared=compared, max_abs=d, max_rel=r, tol=tol, note=note)


def _count(method, compared, ours, ref):
    wrong = int((ours != ref).sum())
    return common.Row(method=method, compared=compared, max_abs=float(wrong), dtype="int64", tol=0)


class _Logger(SimpleNamespace):
    """Stand-in of the engines' ``utils.MetricLogger``: one pass, keeps the last ``Loss``."""

    def __init__(self, **_):
        super().__init__(meters={}, loss=None)

    def add_meter(self, name, meter):
        self.meters[name] = meter

    def log_every(self, iterable, *_):
        yield from iterable

    def update(self, **kw):
        self.loss = kw.get("Loss", self.loss)
        self.meters.setdefault("Acc@1", _Meter())
        self.meters.setdefault("Acc@5", _Meter())

    def synchronize_between_processes(self):
        pass


class _Meter(SimpleNamespace):
    global_avg = 0.0

    def update(self, *_, **__):
        pass


def _engine_loss(path, logits, targets, reduce_sim, class_mask, task, coeff):
    """The loss ``train_one_epoch`` computes for one batch whose model returns ``logits``, and
    the (masked) logits its criterion received."""
    import sys

    import numpy as np
    import torch

    logger = _Logger()
    utils = SimpleNamespace(MetricLogger=lambda **_: logger, SmoothedValue=lambda **_: _Meter(),
                            get_world_size=lambda: 1)
    ns = {"torch": torch, "math": math, "sys": sys, "np": np, "utils": utils,
          "Iterable": object, "accuracy": lambda *_, **__: (torch.zeros(()), torch.zeros(()))}
    ref = common.load_source(path, ["train_one_epoch"], namespace=ns, replace={
        "torch.cuda.synchronize()": "pass",
        'print("Averaged stats:", metric_logger)': "pass"})

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros((), dtype=logits.dtype))

        def forward(self, x, **_):
            return {"logits": logits + self.p, "reduce_sim": reduce_sim, "pre_logits": x}

    opt = SimpleNamespace(zero_grad=lambda: None, step=lambda: None, param_groups=[{"lr": 0.0}])
    args = SimpleNamespace(distributed=False, epochs=1, print_freq=1, train_mask=True,
                           nb_classes=logits.shape[1], pull_constraint=True,
                           pull_constraint_coeff=coeff)
    seen = []

    def criterion(out, target):
        seen.append(out.detach())
        return torch.nn.functional.cross_entropy(out, target)

    ref.train_one_epoch(Model(), Model(), criterion, [(logits, targets)], opt,
                        torch.device("cpu"), 0, max_norm=1.0, task_id=task,
                        class_mask=class_mask, args=args)
    return torch.tensor(logger.loss, dtype=torch.float64), seen[0]


def _context(backbone, stream, task=0):
    import logging

    import torch

    from cl.core.strategy import Context

    return Context(task_index=task, task=stream[task], stream=stream,
                   label_space=stream.train_label_space(task), backbone=backbone,
                   device=torch.device("cpu"), seed=0,
                   generator=torch.Generator().manual_seed(task), logger=logging.getLogger("fid"),
                   record=lambda *_: None)


def _strategy(name, backbone, stream, **options):
    import strategies

    s = strategies.get(name, epochs=0, **options)
    s.attach(backbone)
    s._ensure_built(backbone.model, _context(backbone, stream))
    s._modules.double()
    s.begin_task(backbone.model, _context(backbone, stream))
    return s


def _l2p(src, backbone, stream, x, query):
    import torch

    from cl.models import tokens

    rows = []
    ref_ns = {"torch": torch, "nn": torch.nn}
    Prompt = common.load_source(src / "prompt.py", ["Prompt"], namespace=ref_ns).Prompt
    model, visual = backbone.model, backbone.model.visual
    d = visual.transformer.width
    ours = _strategy("l2p", backbone, stream, pool_size=6, prompt_length=3, top_k=2)
    for batchwise in (False, True):
        torch.manual_seed(0)
        ref = Prompt(length=3, embed_dim=d, embedding_key="cls", prompt_init="uniform",
                     prompt_pool=True, prompt_key=True, pool_size=6, top_k=2,
                     batchwise_prompt=batchwise, prompt_key_init="uniform").double()
        with torch.no_grad():
            ours.pool.prompts.copy_(ref.prompt)
            ours.pool.keys.copy_(ref.prompt_key)
        embed = tokens.embed_tokens(visual, x)
        out = ref(embed[:, 1:], cls_features=query)
        from strategies.prompts.selection import select, similarity
        idx = select(similarity(query, ours.pool.keys), 2, batchwise=batchwise)
        chosen, pull = ours.pool(query, 2, batchwise=batchwise)
        tag = "batchwise" if batchwise else "per image"
        rows.append(_count("l2p", f"top-k prompt indices ({tag}), disagreements", idx,
                           out["prompt_idx"]))
        rows.append(_row("l2p", f"pull constraint reduce_sim ({tag})", pull, out["reduce_sim"],
                         1e-12))
        prompts = chosen.reshape(len(x), -1, d)
        layout = torch.cat([embed[:, :1], out["prompted_embedding"]], dim=1)
        rows.append(_row("l2p", f"token sequence [CLS, prompts, patches] ({tag})",
                         tokens.insert_prompts(embed, prompts), layout, 0.0))
    # head on the mean of the prompt outputs (head_type='prompt'), then the training loss
    head = common.load_source(src / "vision_transformer.py", ["VisionTransformer.forward_head"],
                              namespace={"torch": torch}).forward_head
    final = tokens.run_blocks(visual, tokens.insert_prompts(tokens.embed_tokens(visual, x),
                                                            prompts))
    me = SimpleNamespace(class_token=True, head_type="prompt", prompt_pool=True,
                         total_prompt_len=prompts.shape[1], fc_norm=torch.nn.Identity(),
                         head=ours.head)
    ref_logits = head(me, {"x": visual.ln_post(final)})["logits"]
    features, extra = ours.prompted(model, x, query, task=0, train=True)
    ours_logits = ours.class_logits(model, features, range(stream.n_classes))
    rows.append(_row("l2p", "logits of the prompted tower (forward_head 'prompt')", ours_logits,
                     ref_logits, 1e-12))
    targets = torch.tensor(stream.task_label_space([1]).class_ids * 3)[:len(x)]
    ctx = _context(backbone, stream, 1)
    mask = [list(stream.task_label_space([t]).class_ids) for t in range(len(stream))]
    ref_loss, ref_masked = _engine_loss(src / "engine.py", ours_logits.detach(), targets,
                                        -extra / ours.options.pull_constraint_coeff, mask, 1,
                                        ours.options.pull_constraint_coeff)
    from strategies.prompts.losses import mask_logits

    masked = mask_logits(ours_logits, torch.tensor(mask[1]))
    rows.append(_count("l2p", "logits after train_mask: −inf positions, disagreements",
                       torch.isinf(masked), torch.isinf(ref_masked)))
    rows.append(_row("l2p", "logits after train_mask: kept values", masked[:, mask[1]],
                     ref_masked[:, mask[1]], 0.0))
    ours.begin_task(model, ctx)
    ours_loss = ours.loss(model, x, targets, ctx)
    rows.append(_row("l2p", "training loss: CE of masked logits − λ·reduce_sim (task 1)",
                     ours_loss, ref_loss, 1e-12))
    return rows


def _attention(cls, block, heads):
    """A reference attention module holding an open_clip block's q/k/v and output weights."""
    import torch

    d = block.attn.embed_dim
    ref = cls(d, num_heads=heads, qkv_bias=True).double()
    with torch.no_grad():
        ref.qkv.weight.copy_(block.attn.in_proj_weight)
        ref.qkv.bias.copy_(block.attn.in_proj_bias)
        ref.proj.weight.copy_(block.attn.out_proj.weight)
        ref.proj.bias.copy_(block.attn.out_proj.bias)
    return ref


def _reference_forward(visual, x, attention, prompts):
    """open_clip's blocks with ``attention[i](ln_1(x), prompts[i])`` in the prompted blocks."""
    from cl.models import tokens

    h = tokens.embed_tokens(visual, x)
    for i, block in enumerate(visual.transformer.resblocks):
        if i in prompts:
            h = h + block.ls_1(attention[i](block.ln_1(h), prompt=prompts[i]))
            h = h + block.ls_2(block.mlp(block.ln_2(h)))
        else:
            h = block(h)
    return visual.ln_post(h[:, 0])


def _dualprompt(src, backbone, stream, x, query):
    import torch

    from cl.models import tokens

    rows = []
    model, visual = backbone.model, backbone.model.visual
    d, heads = visual.transformer.width, visual.transformer.resblocks[0].attn.num_heads
    b, hd = len(x), d // heads
    ns = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional}
    PreT = common.load_source(src / "attention.py", ["PreT_Attention"], namespace=ns).PreT_Attention
    attention = {i: _attention(PreT, blk, heads) for i, blk in
                 enumerate(visual.transformer.resblocks)}
    prefix = torch.randn(b, 2, 3, d, generator=torch.Generator().manual_seed(5))
    h = torch.randn(b, 7, d, generator=torch.Generator().manual_seed(6))
    rows.append(_row("dualprompt", "prefix attention vs PreT_Attention (same weights)",
                     tokens.prefix_attention(visual.transformer.resblocks[0].attn, h,
                                             tokens.Prefix(prefix[:, 0], prefix[:, 1])),
                     attention[0](h, prefix.view(b, 2, 3, heads, hd)), 1e-12))
    opts = {"g_layers": (0,), "e_layers": (1,), "g_length": 2, "e_length": 3, "pool_size": 5,
            "top_k": 1}
    ours = _strategy("dualprompt", backbone, stream, **opts)
    for fixed in (True, False):
        for batchwise, task, forced in ((True, 1, True), (False, 2, False)):
            EPrompt = common.load_source(src / "prompt.py", ["EPrompt"], namespace=dict(ns),
                                         replace=FIX if fixed else None).EPrompt
            torch.manual_seed(1)
            ref = EPrompt(length=3, embed_dim=d, embedding_key="cls", prompt_init="uniform",
                          prompt_pool=True, prompt_key=True, pool_size=5, top_k=1,
                          batchwise_prompt=batchwise, prompt_key_init="uniform", num_layers=1,
                          use_prefix_tune_for_e_prompt=True, num_heads=heads).double()
            mask = torch.full((b, 1), task) if forced else None
            out = ref(h, prompt_mask=mask, cls_features=query)
            with torch.no_grad():
                ours.e_pool.prompts.copy_(ref.prompt.permute(2, 0, 1, 3, 4, 5).reshape(
                    5, 1, 2, 3, d))
                ours.e_pool.keys.copy_(ref.prompt_key)
            chosen, pull = ours.e_pool(query, 1, batchwise=batchwise,
                                       forced=mask)  # (B, 1, 1, 2, 3, D)
            mine = chosen[:, :, 0].permute(0, 2, 1, 3, 4).reshape(b, 2, 3, d)
            theirs = out["batched_prompt"][0].reshape(b, 2, 3, d)
            tag = (f"{'forced prompt t' if forced else 'matched'}, "
                   f"{'batchwise' if batchwise else 'per image'}")
            if not fixed:
                rows.append(common.Row(
                    method="dualprompt", compared=f"E-prefixes vs the unpatched EPrompt ({tag}); "
                    "its reshape swaps batch and key/value (issue #8)",
                    max_abs=common.max_diff(mine, theirs)[0], tol=math.inf,
                    note="measured, a known reference defect; not a tolerance"))
                continue
            rows.append(_row("dualprompt", f"E-prefixes, EPrompt with permute fix ({tag})",
                             mine, theirs, 0.0))
            rows.append(_row("dualprompt", f"pull constraint reduce_sim ({tag})", pull,
                             out["reduce_sim"], 1e-12))
    # end to end: G-prefix (block 0) and E-prefix (block 1) through PreT_Attention
    ctx = _context(backbone, stream, 1)
    ours.begin_task(model, ctx)  # shared_prompt_pool: E-prompt 1 := E-prompt 0
    g_ref = ours.g_prompt.prompt.detach().view(1, 2, 2, heads, hd)
    features, extra = ours.prompted(model, x, query, task=1, train=True)
    ref_features = _reference_forward(
        visual, x, attention, {0: g_ref[torch.zeros(b, dtype=torch.long)],
                               1: _forced_e_prompt(ours, b, heads, hd)})
    rows.append(_row("dualprompt", "prompted [CLS] feature, training task 1 (G + forced E)",
                     features, ref_features, 1e-12))
    logits = ours.class_logits(model, features, range(stream.n_classes))
    targets = torch.tensor(stream.task_label_space([1]).class_ids * 3)[:b]
    masks = [list(stream.task_label_space([t]).class_ids) for t in range(len(stream))]
    ref_loss, _ = _engine_loss(src / "engine.py", logits.detach(), targets,
                               -extra / ours.options.pull_constraint_coeff, masks, 1,
                               ours.options.pull_constraint_coeff)
    rows.append(_row("dualprompt", "training loss: CE of masked logits − λ·reduce_sim (task 1)",
                     ours.loss(model, x, targets, ctx), ref_loss, 1e-12))
    return rows


def _forced_e_prompt(ours, b, heads, hd):
    """E-prompt 1 (forced, as training task 1) in PreT_Attention's layout (B, 2, P, H, hd)."""
    prompt = ours.e_pool.prompts[1, 0]  # (2, P, D)
    return prompt.detach().view(1, 2, -1, heads, hd).expand(b, -1, -1, -1, -1).contiguous()


def _coda(src, backbone, stream, x, query):
    import copy as copy_module

    import torch

    from cl.models import tokens
    from strategies.prompts.coda import gram_schmidt

    rows = []
    model, visual = backbone.model, backbone.model.visual
    d, heads = visual.transformer.width, visual.transformer.resblocks[0].attn.num_heads
    b, tasks = len(x), len(stream)
    ns = {"torch": torch, "nn": torch.nn, "copy": copy_module, "np": __import__("numpy")}
    zoo = common.load_source(src / "models" / "zoo.py",
                             ["CodaPrompt", "ortho_penalty", "tensor_prompt"], namespace=ns,
                             replace={"torch.eye(t.shape[0]).cuda()":
                                      "torch.eye(t.shape[0], dtype=t.dtype)"})
    vit = common.load_source(src / "models" / "vit.py", ["Attention"], namespace=dict(ns))
    attention = {i: _attention(vit.Attention, blk, heads) for i, blk in
                 enumerate(visual.transformer.resblocks)}
    h = torch.randn(b, 7, d, generator=torch.Generator().manual_seed(6))
    pk, pv = torch.randn(2, b, 4, d, generator=torch.Generator().manual_seed(7))
    rows.append(_row("coda-prompt", "prefix attention vs Attention(prompt=[pk, pv])",
                     tokens.prefix_attention(visual.transformer.resblocks[1].attn, h,
                                             tokens.Prefix(pk, pv)),
                     attention[1](h, prompt=[pk, pv]), 1e-12))
    torch.manual_seed(2)
    ref = zoo.CodaPrompt(d, tasks, [10, 8, 0.1], key_dim=d).double()
    # Gram-Schmidt of task 1's components against task 0's, same Gaussian draws
    ref.task_count = 1
    vv = ref.e_k_0.detach().clone()
    torch.manual_seed(11)
    theirs = ref.gram_schmidt(vv)[2:4]
    mine = gram_schmidt(vv[:2], 2, torch.Generator().manual_seed(11))
    rows.append(_row("coda-prompt", "Gram-Schmidt init of task 1's keys (same draws)", mine,
                     theirs, 1e-12))
    ref.task_count = 0
    ref.process_task_count()  # task 1: components 2-3 initialised, 0-1 kept
    ours = _strategy("coda-prompt", backbone, stream, pool_size=10, prompt_length=8,
                     layers=(0, 1), ortho_mu=0.1)
    with torch.no_grad():
        for layer in (0, 1):
            for j, block in enumerate(ours.coda.blocks):
                rows_j = slice(2 * j, 2 * j + 2)
                block.keys[layer].copy_(getattr(ref, f"e_k_{layer}")[rows_j])
                block.attention[layer].copy_(getattr(ref, f"e_a_{layer}")[rows_j])
                block.prompts[layer].copy_(getattr(ref, f"e_p_{layer}")[rows_j])
    prompts, ref_loss = {}, 0.0
    for layer in (0, 1):
        (ek, ev), loss, _ = ref.forward(query, layer, None, train=True)
        keys, att, comps = ours.coda.components(layer, 1)
        from strategies.prompts.coda import coda_ortho_loss, coda_prefix

        mk, mv = coda_prefix(query, keys, att, comps)
        rows.append(_row("coda-prompt", f"prefix keys and values, block {layer} (task 1, train)",
                         torch.stack([mk, mv]), torch.stack([ek, ev]), 1e-12))
        rows.append(_row("coda-prompt", f"orthogonality penalty μ·(K, A, P), block {layer}",
                         0.1 * coda_ortho_loss(keys, att, comps), loss, 1e-12))
        prompts[layer], ref_loss = [ek, ev], ref_loss + loss
    features, _ = ours.prompted(model, x, query, task=1, train=True)
    rows.append(_row("coda-prompt", "prompted [CLS] feature, training task 1",
                     features, _reference_forward(visual, x, attention, prompts), 1e-12))
    ref.task_count = 1
    (ek, ev), _, _ = ref.forward(query, 0, None, train=False)
    mk, mv = coda_prefix(query, *ours.coda.components(0, 1))
    rows.append(_row("coda-prompt", "prefix keys and values at evaluation after task 1",
                     torch.stack([mk, mv]), torch.stack([ek, ev]), 1e-12))
    # the loss of update_model: old classes -inf, future ones sliced off, + prompt loss
    logits = ours.class_logits(model, features, range(stream.n_classes)).detach()
    targets = torch.tensor(stream.task_label_space([1]).class_ids * 3)[:b]
    learner = common.load_source(src / "learners" / "prompt.py", ["Prompt.update_model"],
                                 namespace={"torch": torch}).update_model
    criterion = common.load_source(src / "learners" / "default.py", ["NormalNN.criterion"],
                                   namespace={"torch": torch}).criterion
    me = SimpleNamespace(valid_out_dim=4, last_valid_out_dim=2,
                         dw_k=torch.ones(5, dtype=torch.float64),
                         criterion_fn=torch.nn.CrossEntropyLoss(reduction="none"),
                         optimizer=SimpleNamespace(zero_grad=lambda: None, step=lambda: None))
    me.criterion = lambda *a: criterion(me, *a)
    p = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
    me.model = lambda *_, **__: (logits + p, (ref_loss.detach() + p).reshape(1))
    theirs, _ = learner(me, x, targets)
    ctx = _context(backbone, stream, 1)
    ours.begin_task(model, ctx)
    with torch.no_grad():  # begin_task re-initialised task 1: put the compared values back
        for layer in (0, 1):
            block = ours.coda.blocks[1]
            block.keys[layer].copy_(getattr(ref, f"e_k_{layer}")[2:4])
            block.attention[layer].copy_(getattr(ref, f"e_a_{layer}")[2:4])
            block.prompts[layer].copy_(getattr(ref, f"e_p_{layer}")[2:4])
    rows.append(_row("coda-prompt", "training loss: CE of masked logits + μ·ortho (task 1)",
                     ours.loss(model, x, targets, ctx), theirs, 1e-12))
    return rows


def run(refs: common.Refs) -> list[common.Row]:
    l2p_src, dual_src, coda_src = (refs.path(r) for r in REFERENCES)
    import copy

    import torch

    import streams
    from cl.models.backbones import create_backbone

    torch.set_default_dtype(torch.float64)
    try:
        backbone = create_backbone("cl-tiny-vit")
        backbone.model = copy.deepcopy(backbone.model).double().eval()
        stream = streams.get("toy-cil", n_tasks=5)
        g = torch.Generator().manual_seed(3)
        x = torch.randn(6, 3, 32, 32, generator=g)
        from cl.models import tokens

        query = tokens.pool_and_project(backbone.model.visual, tokens.run_blocks(
            backbone.model.visual, tokens.embed_tokens(backbone.model.visual, x)), project=False)
        rows = _l2p(l2p_src, backbone, stream, x, query)
        rows += _dualprompt(dual_src, backbone, stream, x, query)
        rows += _coda(coda_src, backbone, stream, x, query)
    finally:
        torch.set_default_dtype(torch.float32)
    return rows
