"""DIKI's residual attention, calibration, task statistics and schedule against its own source.

Reference: ``lloongx/DIKI`` @ 8ef89e7, executed from its checkout:

* ``clip/attention.py`` imported unmodified: ``MultiheadAttention`` with a prefix pool
  (its ``forward`` and ``multi_head_attention_forward``).
* ``DIKI/DIKI.py``: ``CustomCLIP.forward`` ast-extracted and run on a stand-in ``self`` whose
  encoders are toy-clip's (the frozen image tower; the prompted encoders record the prompt
  indices and weights they are given and return toy-clip's features). The task statistics are
  the reference's own lines of ``train_one_task`` (from ``all_image_features =
  all_image_features.type(torch.float)`` to the ``covar +=`` line), cut out of the source
  text and executed on the same features. A second calibration run replaces the literal
  ``/512-1.0`` by ``/64-1.0`` (toy-clip's embedding width; the only change to its code).
* ``DIKI/utils.py``: ``cosine_schedule_warmup`` and ``build_cosine_scheduler`` (ast-extracted).

Identical inputs: toy-clip's first image block and first text block (their real in/out
projections), prefix pools with random keys *and* values (so the residual term is not zero),
float64 on both sides; per-sample prefix ids and weights (image side) and one id with the
batch-mean weight under the causal mask (text side). Calibration: toy-clip features of three
toy-mtil domains (40 training images per class) as the learned tasks, a test batch mixing the
domains.
"""

from __future__ import annotations

import common

NAME = "diki"
DESCRIPTION = "DIKI residual prefix attention, calibration, task Gaussians and schedule"
REFERENCES = (common.Git("lloongx/DIKI", "8ef89e794cca58134d75228ba2950ec67134491f"),)


def _attention_rows(ref_attention, backbone):
    import copy

    import torch

    from cl.models.tokens import Prefix, prefix_attention

    rows = []
    g = torch.Generator().manual_seed(0)
    for tower, block in (("image", backbone.model.visual.transformer.resblocks[0]),
                         ("text", backbone.model.transformer.resblocks[0])):
        mha = copy.deepcopy(block.attn).double()
        dim, heads = mha.embed_dim, mha.num_heads
        pool = torch.randn(3, 2, 4, dim, generator=g, dtype=torch.float64)
        ref = ref_attention.MultiheadAttention(dim, heads, prefix_pool_size=3, prefix_len=4)
        with torch.no_grad():
            ref.in_proj_weight.copy_(mha.in_proj_weight)
            ref.in_proj_bias.copy_(mha.in_proj_bias)
            ref.out_proj.weight.copy_(mha.out_proj.weight)
            ref.out_proj.bias.copy_(mha.out_proj.bias)
        ref = ref.double()
        ref.prefix_pool = torch.nn.Parameter(pool.clone())
        batch, length = 4, 7
        x = torch.randn(batch, length, dim, generator=g, dtype=torch.float64)
        if tower == "image":
            ids, weight, mask = torch.tensor([2, 0, 1, 2]), torch.rand(batch, generator=g,
                                                                       dtype=torch.float64), None
            ref_ids, ref_weight = ids.view(batch, 1), weight
            prefix = Prefix(pool[ids, 0], pool[ids, 1])          # per-sample (B, L, D)
        else:
            weight = torch.rand((), generator=g, dtype=torch.float64)
            mask = backbone.model.attn_mask[:length, :length].double()
            ref_ids, ref_weight = torch.tensor([[1]]), weight.repeat(batch)
            prefix = Prefix(pool[1, 0], pool[1, 1])              # one for the batch (L, D)
        with torch.no_grad():
            mine = prefix_attention(mha, x, prefix, mode="residual", weight=weight,
                                    attn_mask=mask)
            theirs = ref(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1),
                         attn_mask=mask, prompt_ids=ref_ids, batch_weight=ref_weight)[0]
        a, r = common.max_diff(mine, theirs.transpose(0, 1))
        rows.append(common.Row(method="diki", compared=f"residual prefix attention, {tower} "
                               "block (random prefix keys and values)", max_abs=a, max_rel=r,
                               dtype="float64", tol=1e-12))
    return rows


def _features(backbone):
    import torch

    import streams

    stream = streams.get("toy-mtil", domains=["counts", "colours", "shapes"], n_train=40,
                         n_test=4, seed=0)  # 120+ images per domain: more than 64 dimensions
    train, test = [], []
    for task in stream:
        data, held = task.load_train(), task.load_test()
        train.append(torch.stack([backbone.preprocess(data[i][0]) for i in range(len(data))]))
        test.append(torch.stack([backbone.preprocess(held[i][0]) for i in range(4)]))
    return train, torch.cat([test[2], test[0][:2], test[1][:2]])  # a clear majority: task 2


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0])
    import textwrap
    import types

    import numpy as np
    import torch
    from torch.distributions.multivariate_normal import MultivariateNormal

    from cl.models.backbones import create_backbone
    from strategies.adaptation.diki import DIKI, calibrate, majority, task_statistics

    backbone = create_backbone("toy-clip")
    model = backbone.model.eval()
    rows = _attention_rows(common.import_file(src / "clip" / "attention.py", "ref_attention"),
                           backbone)

    # task Gaussians: the reference's own lines of train_one_task on the same features
    text = (src / "DIKI" / "DIKI.py").read_text()
    start = text.index("        all_image_features = all_image_features.type(torch.float)")
    end = text.index("\n", text.index("        covar +=  torch.eye"))
    snippet = compile(textwrap.dedent(text[start:end]), str(src / "DIKI" / "DIKI.py"), "exec")
    train, test = _features(backbone)
    means, covs, worst = [], [], (0.0, 0.0)
    with torch.no_grad():
        for images in train:
            feats = model.encode_image(images, normalize=True)
            scope = {"torch": torch, "all_image_features": feats.clone()}
            exec(snippet, scope)  # noqa: S102 - the reference's own lines
            mean, cov = task_statistics(feats, 1e-7)
            d = [common.max_diff(mean, scope["mean"]), common.max_diff(cov, scope["covar"])]
            worst = (max(worst[0], *(a for a, _ in d)), max(worst[1], *(r for _, r in d)))
            means.append(mean)
            covs.append(cov)
    rows.append(common.Row(method="diki", compared="task Gaussians (mean, covariance + 1e-7·I), "
                           "3 toy-mtil domains", max_abs=worst[0], max_rel=worst[1],
                           dtype="float32", tol=0.0))

    # calibration: CustomCLIP.forward on a stand-in self with toy-clip's encoders
    seen = {}

    def prompted(name):
        def encode(x, indices, weight):
            seen[name] = (indices.clone(), None if weight is None else weight.clone())
            return model.encode_image(x) if name == "image" else torch.ones(3, x.shape[-1])
        return encode

    stub = types.SimpleNamespace(
        image_encoder_ori=lambda x: model.encode_image(x), dtype=torch.float32,
        means=torch.stack(means), covars=torch.stack(covs), task_learnt=torch.tensor(3),
        batchwise_prompt=True, visual_prompt=True, logit_scale=model.logit_scale,
        text_encoder=lambda p, t, indices, weight: seen.__setitem__("text", (indices.clone(),
                                                                             weight.clone()))
        or torch.ones(3, model.text_projection.shape[1]),
        image_encoder=prompted("image"))
    class _Processor:  # the class prompts are not compared here: the text encoder is a probe
        cur_n_cls = 3

        def __call__(self, indices):
            return torch.zeros(3, 1), torch.zeros(3, 1)

    stub.prompt_processor = _Processor()
    for scale in (512, 64):  # the reference's constant; 64 (toy-clip's width) spreads weights
        forward = common.load_source(
            src / "DIKI" / "DIKI.py", ["CustomCLIP.forward"],
            replace=None if scale == 512 else {"/512-1.0": f"/{scale}-1.0"},
            namespace={"torch": torch, "MultivariateNormal": MultivariateNormal}).forward
        with torch.no_grad():
            forward(stub, test)
            frozen = DIKI().frozen_features(model, test)
            ids, weight = calibrate(frozen, torch.stack(means), torch.stack(covs), float(scale))
        task = majority(ids)
        ref_ids, ref_weight = seen["image"]
        rows.append(common.Row(
            method="diki", compared=f"batch prompt index (majority of per-image argmax log N; "
            f"scale {scale}), disagreements",
            max_abs=float(int(ref_ids.flatten()[0]) != int(task)), dtype="int", tol=0.0,
            note=f"chosen task {int(task)}"))
        a, r = common.max_diff(weight, ref_weight)
        rows.append(common.Row(
            method="diki", compared=f"per-image calibration weight sigmoid(log N / {scale} − 1)",
            max_abs=a, max_rel=r, dtype="float32", tol=1e-6,
            note=f"weights in [{weight.min():.3g}, {weight.max():.3g}]"))
        a, r = common.max_diff(weight.mean().expand(3), seen["text"][1])
        rows.append(common.Row(method="diki", compared=f"text-prefix weight (batch mean; scale "
                               f"{scale})", max_abs=a, max_rel=r, dtype="float32", tol=1e-6))

    # schedule: build_cosine_scheduler's rate per step vs lr × our factor
    sched = common.load_source(src / "DIKI" / "utils.py",
                               ["cosine_schedule_warmup", "build_cosine_scheduler"],
                               namespace={"np": np})
    lr, total = 5.0, 40
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    reference = sched.build_cosine_scheduler(opt, lr=lr, total_step=total)
    ours = DIKI(lr=lr)
    worst = max(abs(float(reference.lrs[i]) - lr * ours._lr_factor(i, total))
                for i in range(total))
    rows.append(common.Row(method="diki", compared="learning rate per step (lr 5, T = 40)",
                           max_abs=worst, max_rel=worst / lr, dtype="float64", tol=1e-12))
    return rows
