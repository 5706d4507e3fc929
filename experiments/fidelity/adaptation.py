"""ZSCL's distillation and weight-space merges, and MoE-Adapters' DDAS decisions, against ours.

References executed (Thunderbeee/ZSCL ``mtil/src/models/``):

* ``helpers.py`` ``distillation``, ``l2_loss`` and ``merge_we``, ast-extracted unchanged (run with
  ``torch`` and ``F = torch.nn.functional`` as globals).
* ``finetune.py`` lines ``logits_current = logit_scale.exp() * …`` through
  ``loss += loss_ZSCL_2`` (the ZSCL / LwF loss block: image term, ``--feature_mse``,
  ``--image_loss``, ``--text_loss``, ``--weight_adjust``), run unchanged in a namespace holding
  the embeddings the loop computes just before (``ref_out_current``, ``ref_out``,
  ``ref_embeddings``, already L2-normalised), ``logit_scale``, ``loss = 0`` and ``args``.
* ``finetune.py`` lines ``if (args.we or args.moving_avg …`` through ``merge_we(model.module,
  we_model, we_n)`` (the weight-ensemble snapshot, ``--we --avg_freq``), run unchanged after each
  iteration ``0..T`` of a stand-in training loop (the block stops after the ``elif args.we:``
  branch: the trailing ``else: wise_we(...)``, ``--we_wise``, is not a method of ours).
* ``finetune.py`` the two ``--wise_merge`` lines ``for param_q, param_k in
  zip(model.module.parameters(), wise_ft_model.parameters()):`` / ``param_q.data = …``, unchanged.

Reference executed (JiazuoYu/MoE-Adapters4CL ``mtil/src/models/``):

* ``AutoEncoder.py`` ``Autoencoder`` and ``encoder_criterion``, ast-extracted unchanged (``nn`` as
  a global); each instance gets the state dict of one of our ``Autoencoder`` s (same layer names).
* ``evaluation.py`` ``zeroshot_eval`` lines ``input_to_ae = F.sigmoid(input_to_ae)`` through
  ``task_id = best_router - 1`` (the DDAS decision over its 12 autoencoders), run unchanged with
  ``input_to_ae`` = the batch's (N, D) features, i.e. after its AlexNet ``feature_extractor`` and
  ``view`` (not run: the features are plain tensors), ``Autoencoder_list`` and
  ``args.threshold``. Not compared: the autoencoders' training (``AutoEncoder.py``'s loop).

Ours: ``strategies.adaptation.losses`` (``distillation_loss``, ``clip_distillation``,
``weight_l2_loss``), ``strategies.adaptation.weight_ensemble`` (``interpolate``,
``RunningWeightAverage``) and ``strategies.adaptation.ddas.DDAS`` (batch decisions; its
``domains_`` = ``[ZERO_SHOT, 0, …, 10]``: autoencoder 0 is the reference domain, whose winners go
to zero-shot as the reference's ``task_id = -1``). Inputs: float64 tensors from seeded
generators; the "models" are float64 ``nn.Sequential`` MLPs whose parameters are the weights ours
takes as name → tensor mappings. The stand-in training step adds a seeded perturbation at
iterations ``0..T−1`` and none at the reference's extra iteration ``T`` (its learning rate there
is 0, see ``docs/fidelity.md``), so the comparison covers when snapshots are taken as well as
their average.
"""

from __future__ import annotations

import common

NAME = "adaptation"
DESCRIPTION = ("ZSCL / LwF distillation, L2 anchor, WiSE-FT merge, ZSCL weight ensemble and "
               "MoE-Adapters DDAS decisions vs the references' own source")
ZSCL = common.Git("Thunderbeee/ZSCL", "b96e71423e2cbd592ddd229aaf2f1e889b86f1af")
MOE = common.Git("JiazuoYu/MoE-Adapters4CL", "4572d97d28d3a7b45e8808bee1d3c64263f425f2")
REFERENCES = (ZSCL, MOE)
AUTOENCODERS = 12  # evaluation.py's loop over Autoencoder_list[0..11]


def _mlp(seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def _named(module) -> dict:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def _losses(src, ref) -> list[common.Row]:
    from types import SimpleNamespace

    import torch

    from strategies.adaptation.losses import clip_distillation, distillation_loss, weight_l2_loss

    worst = {"kd": (0.0, 0.0), "zscl": (0.0, 0.0), "l2": (0.0, 0.0)}
    cases = {"kd": 0, "zscl": 0}

    def keep(key, d):
        worst[key] = tuple(max(a, b) for a, b in zip(worst[key], d))

    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        t, s = torch.randn(7, 11, generator=g, dtype=torch.float64) * 5, torch.randn(
            7, 11, generator=g, dtype=torch.float64) * 5
        for T in (0.5, 1.0, 2.0, 4.0):
            keep("kd", common.max_diff(distillation_loss(t, s, T), ref.distillation(t, s, T=T)))
            cases["kd"] += 1

        student, teacher, texts = (_unit(torch.randn(n, 16, generator=g, dtype=torch.float64))
                                   for n in (8, 8, 10))
        logit_scale = torch.tensor(4.6052, dtype=torch.float64)  # CLIP's log(100)
        for T in (1.0, 2.0, 3.0):
            for image_loss, text_loss in ((True, False), (False, True), (True, True)):
                args = SimpleNamespace(T=T, feature_mse=False, image_loss=image_loss,
                                       text_loss=text_loss, weight_adjust=False)
                ns = common.run_statements(
                    src, "logits_current = logit_scale.exp() * ref_out_current",
                    "loss += loss_ZSCL_2",
                    {"torch": torch, "distillation": ref.distillation, "args": args,
                     "logit_scale": logit_scale, "ref_out_current": student, "ref_out": teacher,
                     "ref_embeddings": texts, "loss": torch.zeros((), dtype=torch.float64)})
                ours = clip_distillation(student, teacher, texts, logit_scale.exp(),
                                         temperature=T, image_loss=image_loss,
                                         text_loss=text_loss)
                keep("zscl", common.max_diff(ours, ns["loss"]))
                cases["zscl"] += 1
        a, b = _mlp(10 + seed), _mlp(20 + seed)
        ours = weight_l2_loss(list(a.parameters()), list(b.parameters()))
        keep("l2", common.max_diff(ours, ref.l2_loss(a, b)))
    return [
        common.Row("`distillation_loss` (lwf, zscl)",
                   f"T²·CE(s/T, softmax(t/T)) vs `distillation`, {cases['kd']} cases "
                   "(7 × 11 logits, T = 0.5, 1, 2, 4)", *worst["kd"], tol=1e-12),
        common.Row("`clip_distillation` (lwf, zscl)",
                   f"image and text terms vs `finetune.py`'s loss block, {cases['zscl']} cases "
                   "(8 images, 10 texts, D = 16; T = 1, 2, 3; image, text, both)",
                   *worst["zscl"], tol=1e-12),
        common.Row("`weight_l2_loss` (zscl `--l2`)", "Σ‖θ − θ̄‖² vs `l2_loss`, 4 MLP pairs",
                   *worst["l2"], tol=1e-12),
    ]


def _perturb(module, g) -> None:
    import torch

    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _merges(src, ref) -> list[common.Row]:
    import copy
    from types import SimpleNamespace

    import torch

    from strategies.adaptation.weight_ensemble import RunningWeightAverage, interpolate

    wise = (0.0, 0.0)
    for seed in range(3):
        anchor, tuned = _mlp(30 + seed), _mlp(40 + seed)
        for alpha in (0.0, 0.3, 0.8, 1.0):
            ours = interpolate(_named(anchor), _named(tuned), alpha)
            model = SimpleNamespace(module=copy.deepcopy(tuned))
            ns = common.run_statements(
                src, "for param_q, param_k in zip(model.module.parameters(), wise_ft_model",
                "param_q.data = param_q.data * alpha + param_k.data * (1 - alpha)",
                {"model": model, "wise_ft_model": copy.deepcopy(anchor), "alpha": alpha})
            got = _named(ns["model"].module)
            d = [common.max_diff(ours[n], got[n]) for n in got]
            wise = (max(wise[0], *(x[0] for x in d)), max(wise[1], *(x[1] for x in d)))

    we, runs = (0.0, 0.0), 0
    for total, every in ((7, 3), (9, 3), (10, 1), (5, 100)):
        net = _mlp(50 + total)
        ours = RunningWeightAverage(_named(net), every=every, total=total)
        g = torch.Generator().manual_seed(total)
        for step in range(total):
            _perturb(net, g)
            ours.after_step(step, _named(net))
        net = _mlp(50 + total)
        args = SimpleNamespace(we=True, moving_avg=False, we_wise=False, avg_freq=every)
        ns = {"args": args, "merge_we": ref.merge_we, "model": SimpleNamespace(module=net),
              "we_model": copy.deepcopy(net), "we_n": 0}
        g = torch.Generator().manual_seed(total)
        for iteration in range(total + 1):  # the reference's range(total_iterations + 1)
            if iteration < total:  # its last iteration runs at learning rate 0
                _perturb(net, g)
            ns["iteration"] = iteration
            common.run_statements(src, "if (args.we or args.moving_avg or args.we_wise)",
                                  "merge_we(model.module, we_model, we_n)", ns)
        got = _named(ns["we_model"])
        if ns["we_n"] != ours.count:
            raise AssertionError(f"T={total}, every={every}: the reference took {ns['we_n']} "
                                 f"snapshots, ours {ours.count}.")
        d = [common.max_diff(ours.average[n], got[n]) for n in got]
        we = (max(we[0], *(x[0] for x in d)), max(we[1], *(x[1] for x in d)))
        runs += 1
    return [
        common.Row("`interpolate` (wise-ft)", "merged weights vs `--wise_merge`, 3 MLP pairs × "
                   "α = 0, 0.3, 0.8, 1", *wise, tol=0.0),
        common.Row("`RunningWeightAverage` (zscl `--we`)",
                   f"averaged weights (and snapshot count) vs `--we` + `merge_we` over a {runs}-run "
                   "stand-in loop (T, avg_freq) = (7, 3), (9, 3), (10, 1), (5, 100)",
                   *we, tol=1e-15),
    ]


def _ddas(models) -> list[common.Row]:
    from types import SimpleNamespace

    import torch
    import torch.nn.functional as F
    from torch import nn

    from strategies.adaptation.ddas import DDAS, ZERO_SHOT, Autoencoder

    ref = common.load_source(models / "AutoEncoder.py", ["Autoencoder", "encoder_criterion"],
                             namespace={"nn": nn})
    dim, code = 48, 10
    torch.manual_seed(0)
    ours_aes = [Autoencoder(dim, code).double() for _ in range(AUTOENCODERS)]
    ref_aes = []
    for ae in ours_aes:
        r = ref.Autoencoder(input_dims=dim, code_dims=code).double()
        r.load_state_dict(ae.state_dict())
        ref_aes.append(r)
    errors, disagree, zero_shot, batches, routed = (0.0, 0.0), 0, 0, 0, set()
    g = torch.Generator().manual_seed(1)
    feats = [torch.randn(6, dim, generator=g, dtype=torch.float64) * (0.5 + i / 8)
             + torch.randn(dim, generator=g, dtype=torch.float64) for i in range(32)]
    for threshold in (float("inf"), 0.0, None):
        if threshold is None:  # the median best error: half the batches go zero-shot
            with torch.no_grad():
                best = sorted(min(ref.encoder_criterion(a(torch.sigmoid(f)), torch.sigmoid(f))
                                  for a in ref_aes).item() for f in feats)
            threshold = best[len(best) // 2]
        ddas = DDAS(threshold=threshold)
        ddas.autoencoders_ = nn.ModuleList(ours_aes)
        ddas.domains_ = [ZERO_SHOT, *range(AUTOENCODERS - 1)]  # AE 0: the reference domain
        ddas.n_features_in_ = dim
        for f in feats:
            with torch.no_grad():
                ns = common.run_statements(
                    models / "evaluation.py", "input_to_ae = F.sigmoid(input_to_ae)",
                    "task_id = best_router - 1",
                    {"F": F, "input_to_ae": f.clone(), "Autoencoder_list": ref_aes,
                     "encoder_criterion": ref.encoder_criterion,
                     "args": SimpleNamespace(threshold=threshold)})
                ref_errors = torch.stack([ref.encoder_criterion(a(ns["input_to_ae"]),
                                                                ns["input_to_ae"])
                                          for a in ref_aes])
            ours_errors = ddas.decision_function(f)[0]
            d = common.max_diff(ours_errors, ref_errors)
            errors = (max(errors[0], d[0]), max(errors[1], d[1]))
            routes = ddas.predict(f)
            disagree += int((routes != ns["task_id"]).sum())
            zero_shot += int(ns["task_id"] == ZERO_SHOT)
            routed.add(int(ns["task_id"]))
            batches += 1
    what = (f"{batches} batches of 6 (D = {dim}, {AUTOENCODERS} autoencoders of code {code}, "
            f"AE 0 the reference domain; threshold ∞, 0 and the median best error; "
            f"{zero_shot} batches zero-shot, {len(routed) - 1} tasks chosen)")
    return [
        common.Row("`DDAS.decision_function` (moe-adapters)",
                   f"per-autoencoder batch reconstruction errors vs `encoder_criterion`, {what}",
                   *errors, tol=1e-15),
        common.Row("`DDAS.predict` (moe-adapters)",
                   f"routes that differ from `evaluation.py`'s `task_id` (count of images), {what}",
                   disagree, dtype="float64", tol=0),
    ]


def run(refs: common.Refs) -> list[common.Row]:
    import torch
    import torch.nn.functional as F

    models = refs.path(ZSCL) / "mtil" / "src" / "models"
    ref = common.load_source(models / "helpers.py", ["distillation", "l2_loss", "merge_we"],
                             namespace={"torch": torch, "F": F})
    moe = refs.path(MOE) / "mtil" / "src" / "models"
    return (_losses(models / "finetune.py", ref) + _merges(models / "finetune.py", ref)
            + _ddas(moe))
