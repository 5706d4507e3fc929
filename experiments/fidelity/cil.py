"""PROOF, RAPF, ENGINE, CLAP4CLIP and the survey's memory accounting against their own code.

Every reference function below is ast-extracted from the pinned checkout and executed on the
same float64 inputs as ours; the stand-ins replace only what needs CLIP or a GPU:

* PROOF (``utils/inc_net.py``, ``convs/projections.py``, ``utils/toolkit.py``,
  ``models/base.py``): ``Proof_Net.forward_transformer``, ``encode_prototpyes``,
  ``get_context_prompts`` and ``encode_image`` run on a stand-in ``self`` whose ``convnet``
  is the identity on features and whose modules are the reference's ``Proj_Pure_MLP`` and
  ``MultiHeadAttention`` (dropout off, eval mode) with our weights copied in; ``ClipLoss``
  as shipped; ``BaseLearner._construct_exemplar`` (herding) with ``_extract_vectors``
  returning the features of the indices it is given. Replacement: ``.to(self._device)`` → ``''``.
* RAPF (``continual_clip/models.py``): ``sample`` and ``shrink_cov`` (global torch seed vs our
  generator with the same seed: the same draws), ``ClassIncrementalCLIP.mix_matrix`` and
  ``analyze_mean_cov`` on stand-in ``self``. Replacement: none.
* ENGINE (``utils/inc_net.py``, ``utils/loss.py``, ``utils/toolkit.py``):
  ``Engine.update_stat`` (the GDA head; ``visual_forward_`` is the identity, ``.cuda()``
  removed) against :class:`strategies.GDA` (``shrinkage="ks"``), after one task (must agree)
  and after two (the reference mixes precision matrices, we pool the scatter: measured, not
  bounded); ``Engine.rerank`` with a stand-in text encoder (unit-norm random vectors per text)
  and Python's ``random`` seeded as our ``random.Random``; ``contrastive_loss`` and
  ``ClipLoss``.
* CLAP4CLIP (``classifier/continual_clip_variational.py``): ``Adapter``,
  ``CLIP.init_new_heads``, ``get_variational_adapter_features``, ``get_attention_mask`` and
  ``CLIP.forward`` (test and training branches, the script's flags) on a stand-in ``self``
  holding our VGA module and adapters; the image encoder is the identity on features;
  Monte-Carlo noise from the global torch seed vs our generator. Replacements:
  ``.cuda(device=self.args.default_gpu)`` → ``''`` and ``.type(self.dtype)`` → ``''``.
* Survey (``utils/model2exemplar.py``): ``model2examplar.get_infos`` (iCaRL with ResNet-32,
  CIFAR-100 B0Inc10) at the AUC points 2–5, its printed MB against
  :func:`cl.reporting.memory.survey_memory_mb`, and against :data:`SURVEY_BUDGETS_MB`
  rounded to 0.1 MB.
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import sys
import types

import common

NAME = "cil"
DESCRIPTION = "PROOF, RAPF, ENGINE, CLAP4CLIP and the survey's memory accounting"
REFERENCES = (
    common.Git("zhoudw-zdw/PROOF", "0bb20520a726ebf3ca8b0c32168d5d4c1f59f3b7"),
    common.Git("linlany/RAPF", "81d41dfb2e6f0c856c8ca520c1b35bd6ef0ba883"),
    common.Git("LAMDA-CL/ICCV25-ENGINE", "8803d66de74d6c24f9300b8f9ad93c13b6de98bf"),
    common.Git("srvCodes/clap4clip", "7ff95c2894c22ce141f8df06301bed9620a40bf7"),
    common.Git("zhoudw-zdw/CIL_Survey", "197fa86215a5b2e8fe7ce768654620f9a030cbb5"),
)
D, C = 16, 6


def _torch_ns():
    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional as F

    return {"torch": torch, "nn": nn, "F": F, "np": np, "copy": __import__("copy")}


# -- PROOF ---------------------------------------------------------------------------------
def _proof(src) -> list[common.Row]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from strategies.cil.common import clip_contrastive_loss, herding
    from strategies.cil.proof import PROOF, ProofNet

    ns = _torch_ns()
    proj = common.load_source(src / "convs" / "projections.py",
                              ["Proj_Pure_MLP", "ScaledDotProductAttention", "MultiHeadAttention"],
                              namespace=ns)
    net_fns = common.load_source(
        src / "utils" / "inc_net.py",
        ["Proof_Net.forward_transformer", "Proof_Net.encode_prototpyes",
         "Proof_Net.get_context_prompts", "Proof_Net.encode_image", "Proof_Net.encode_text"],
        replace={"self.img_prototypes=self.img_prototypes.to(self._device)": "pass",
                 "x = x.to(self._device)\n    basic_img": "basic_img",
                 "x = x.to(self._device)\n    basic_text": "basic_text"},
        namespace=ns)
    toolkit = common.load_source(src / "utils" / "toolkit.py", ["ClipLoss"], namespace=ns)

    torch.manual_seed(0)
    ours = ProofNet(D, 3).double()
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        ours.extend_task(g)
    ours.double()
    ours.prototypes = F.normalize(torch.randn(C, D, generator=g, dtype=torch.float64), dim=-1)
    ours.eval()

    ref = types.SimpleNamespace(feature_dim=D, img_prototypes=ours.prototypes.clone(),
                                convnet=types.SimpleNamespace(
                                    encode_image=lambda x: x, encode_text=lambda t: t,
                                    logit_scale=ours.logit_scale))
    ref.context_prompts = list(ours.context_prompts)
    attn = proj.MultiHeadAttention(1, D, D, D, dropout=0.1).double().eval()
    attn.load_state_dict(ours.sel_attn.state_dict(), strict=False)
    ref.sel_attn = attn

    def mlp(lin):
        m = proj.Proj_Pure_MLP(D, D, D).double()
        m.MLP[0].load_state_dict(lin.state_dict())
        return m

    ref.projs_img = [mlp(p) for p in ours.projs_img]
    ref.projs_text = [mlp(p) for p in ours.projs_text]
    for fn in ("encode_prototpyes", "get_context_prompts", "encode_image", "encode_text"):
        setattr(ref, fn, types.MethodType(getattr(net_fns, fn), ref))

    x = F.normalize(torch.randn(8, D, generator=g, dtype=torch.float64), dim=-1)
    t = F.normalize(torch.randn(C, D, generator=g, dtype=torch.float64), dim=-1)
    with torch.no_grad():
        img, txt = ours.encode_image(x), F.normalize(ours.encode_text(t), dim=-1)
        r = net_fns.forward_transformer(ref, ref.encode_image(x), txt, True)
        o = ours.fuse(img, txt)
        diffs = [common.max_diff(a, b) for a, b in zip(o, (r[0], r[1], r[3]), strict=True)]
        per = torch.stack([t, F.normalize(t + 0.1, dim=-1)])
        scores = PROOF.scores(ours, x, per)
        # the reference's _eval_cnn sum, from its own encode_image / encode_text / fusion
        rt = F.normalize(torch.stack([F.normalize(ref.encode_text(p), dim=-1) for p in per])
                         .mean(0), dim=-1)
        ri = ref.encode_image(x)
        fi, ft, _, fp = net_fns.forward_transformer(ref, ri, rt, True)
        ref_scores = ri @ rt.T + fi @ ft.T + fi @ fp.T
    a, rel = max(d[0] for d in diffs), max(d[1] for d in diffs)
    rows = [common.Row("proof", "fusion (forward_transformer): image, texts, prototypes",
                       a, rel, tol=1e-12),
            common.Row("proof", "prediction (_eval_cnn sum over 2 templates)",
                       *common.max_diff(scores, ref_scores), tol=1e-12)]
    y = torch.arange(8) % C
    scale = torch.tensor(100.0, dtype=torch.float64)
    ref_loss = toolkit.ClipLoss()(x, t[y], scale)
    rows.append(common.Row("proof", "CLIP contrastive loss (ClipLoss, one process)",
                           *common.max_diff(clip_contrastive_loss(x, t[y], scale), ref_loss),
                           tol=1e-12))

    # herding: BaseLearner._construct_exemplar with a stand-in data manager / extractor
    base = common.load_source(src / "models" / "base.py", ["BaseLearner._construct_exemplar"],
                              namespace=ns | {"DataLoader": lambda d, **k: d, "EPSILON": 1e-8,
                                              "batch_size": 128, "logging": _Quiet()})
    feats = torch.randn(40, D, generator=g, dtype=torch.float64).numpy()
    labels = np.repeat(np.arange(2), 20)

    class _DM:
        def get_dataset(self, classes, source, mode, appendent=None, ret_data=False):
            if appendent is not None:
                return list(appendent[0])
            idx = np.flatnonzero(np.isin(labels, classes))
            return (idx, labels[idx], list(idx)) if ret_data else list(idx)

    learner = types.SimpleNamespace(_known_classes=0, _total_classes=2, feature_dim=D,
                                    _data_memory=np.array([]), _targets_memory=np.array([]),
                                    _class_means=np.zeros((2, D)))
    learner._extract_vectors = lambda loader: (feats[np.asarray(loader, dtype=int)], None)
    base._construct_exemplar(learner, _DM(), 5)
    ref_pick = learner._data_memory.astype(int)
    ours_pick = np.concatenate([np.flatnonzero(labels == c)[
        herding(torch.from_numpy(feats[labels == c]), 5).numpy()] for c in range(2)])
    rows.append(common.Row("proof", "herding exemplar indices (2 classes x 5; count differing)",
                           float((ref_pick != ours_pick).sum()), dtype="index", tol=0))
    return rows


class _Quiet:
    def info(self, *a, **k):
        pass


# -- RAPF ----------------------------------------------------------------------------------
def _rapf(src) -> list[common.Row]:
    import torch

    from strategies.cil.rapf import class_gaussian, fuse_adapter, sample_gaussian, sampling_factor

    ns = _torch_ns()
    m = common.load_source(src / "continual_clip" / "models.py",
                           ["shrink_cov", "sample", "ClassIncrementalCLIP.mix_matrix",
                            "ClassIncrementalCLIP.analyze_mean_cov"], namespace=ns)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(30, D, generator=g, dtype=torch.float64)
    labels = torch.arange(30) % 3
    stand = types.SimpleNamespace(class_edge_distance=[], class_mean_list=[], class_cov_list=[])
    m.analyze_mean_cov(stand, feats, labels)
    ours = [class_gaussian(feats[labels == c]) for c in range(3)]
    stats = max(max(common.max_diff(o[0], r)[0], common.max_diff(o[1], s)[0])
                for o, r, s in zip(ours, stand.class_mean_list, stand.class_cov_list, strict=True))
    rows = [common.Row("rapf", "class mean / covariance (analyze_mean_cov)", stats, tol=1e-11,
                       note="the reference adds 1e-4·I in float32 (1e-4 → 9.99999975e-5)")]
    for shrink in (False, True):
        mean, cov = stand.class_mean_list[0], stand.class_cov_list[0]
        torch.manual_seed(7)
        torch.set_default_dtype(torch.float64)  # the reference draws in the default dtype
        try:
            ref = m.sample(mean, cov, 20, shrink=shrink)
        finally:
            torch.set_default_dtype(torch.float32)
        ours_s = sample_gaussian(mean, sampling_factor(cov, shrink), 20,
                                 torch.Generator().manual_seed(7))
        rows.append(common.Row("rapf", f"Gaussian pseudo-features, same draws (shrink={shrink})",
                               *common.max_diff(ours_s, ref), tol=1e-12))
    new, old = torch.nn.Linear(D, D, bias=False).double(), torch.nn.Linear(D, D, bias=False).double()
    stand = types.SimpleNamespace(adapter=new, old_adapter=old, mix_b=0.6)
    expected = fuse_adapter(new.weight.detach().clone(), old.weight.detach().clone(), 0.6)
    m.mix_matrix(stand)
    rows.append(common.Row("rapf", "decomposed parameter fusion (mix_matrix, mix_bias 0.6)",
                           *common.max_diff(expected, new.weight.detach()), tol=1e-12))
    return rows


# -- ENGINE --------------------------------------------------------------------------------
def _engine(src) -> list[common.Row]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from strategies.cil.common import clip_contrastive_loss
    from strategies.cil.engine import contrastive_loss, rerank_scores
    from strategies.estimators import GDA

    ns = _torch_ns()
    net = common.load_source(src / "utils" / "inc_net.py", ["Engine.update_stat", "Engine.rerank"],
                             replace={".cuda()": "", "print(\"updating stat\")": "pass"},
                             namespace=ns | {"random": random})
    loss = common.load_source(src / "utils" / "loss.py", ["contrastive_loss"], namespace=ns)
    toolkit = common.load_source(src / "utils" / "toolkit.py", ["ClipLoss"], namespace=ns)
    g = torch.Generator().manual_seed(0)
    n_per, tasks = 12, [(0, 3), (3, 6)]
    feats = F.normalize(torch.randn(C * n_per, D, generator=g, dtype=torch.float64), dim=-1)
    labels = torch.arange(C).repeat_interleave(n_per)
    feats = F.normalize(feats + 0.3 * F.one_hot(labels, D).double(), dim=-1)  # the cache's inputs
    stand = types.SimpleNamespace(visual_forward_=lambda x: x)
    ours = GDA(shrinkage="ks", priors="uniform", solver="pinv")
    test = F.normalize(torch.randn(10, D, generator=g, dtype=torch.float64), dim=-1)
    rows = []
    for i, (lo, hi) in enumerate(tasks):
        sel = (labels >= lo) & (labels < hi)
        loader = [(None, feats[sel][:20], labels[sel][:20]), (None, feats[sel][20:], labels[sel][20:])]
        net.update_stat(stand, lo, hi, loader, "cpu")
        ours.partial_fit(feats[sel].numpy(), labels[sel].numpy())
        ref_scores = F.normalize(test, dim=-1) @ stand.W + stand.b
        our_scores = torch.from_numpy(ours.decision_function(test.numpy()))
        a, r = common.max_diff(our_scores, ref_scores)
        if i == 0:
            rows.append(common.Row("engine", "GDA head logits after task 1 (update_stat, KS)",
                                   a, r, tol=1e-7,
                                   note=f"cond(Σ) = {np.linalg.cond(ours.covariance_):.1f}; the "
                                   "reference's uniform log prior is float32 (a constant shift)"))
        else:
            rows.append(common.Row(
                "engine", "GDA head logits after task 2 (deviation: pooled scatter vs mixed "
                "precisions; measured, not bounded)", a, r, tol=math.inf))
    # re-ranking with a stand-in text encoder
    names = [f"class{c}" for c in range(C)]
    des = {a: {b: [f"Trait {a}-{b}-{k}" for k in range(3)] for b in names} for a in names}
    vocab: dict[str, torch.Tensor] = {}

    def encode(texts):
        for t in texts:
            if t not in vocab:
                vocab[t] = F.normalize(torch.randn(D, generator=g, dtype=torch.float64), dim=0)
        return torch.stack([vocab[t] for t in texts])

    stand = types.SimpleNamespace(tokenizer=_ListTokens,
                                  model=types.SimpleNamespace(encode_text=encode))
    out = test @ F.normalize(torch.randn(C, D, generator=g, dtype=torch.float64), dim=-1).T
    random.seed(3)
    ref = net.rerank(stand, des, out, test, names, "cpu", 4)
    ours_rr = rerank_scores(out, test, names, des, encode, 4, random.Random(3))
    rows.append(common.Row("engine", "descriptor re-ranking (rerank, top 4, same draws)",
                           *common.max_diff(ours_rr, ref), tol=1e-12))
    logits = torch.randn(8, 8, generator=g, dtype=torch.float64)
    rows.append(common.Row("engine", "descriptor contrastive loss (contrastive_loss)",
                           *common.max_diff(contrastive_loss(logits), loss.contrastive_loss(logits)),
                           tol=1e-12))
    img, txt = test[:8], F.normalize(torch.randn(8, D, generator=g, dtype=torch.float64), dim=-1)
    scale = math.log(100.0)
    rows.append(common.Row("engine", "CLIP loss at the un-exponentiated scale (ClipLoss)",
                           *common.max_diff(clip_contrastive_loss(img, txt, scale),
                                            toolkit.ClipLoss()(img, txt, scale)), tol=1e-12))
    return rows


class _ListTokens(list):
    def to(self, device):
        return self


# -- CLAP4CLIP -----------------------------------------------------------------------------
def _clap4clip(src) -> list[common.Row]:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.distributions.kl import kl_divergence
    from torch.distributions.normal import Normal

    from strategies.cil.clap4clip import CLAP4CLIP, Clap4ClipNet, VariationalAdapter

    ns = _torch_ns() | {"Normal": Normal, "kl_divergence": kl_divergence}
    path = src / "classifier" / "continual_clip_variational.py"
    gpu = {".cuda(device=self.args.default_gpu)": ""}
    ref = common.load_source(path, ["Adapter"], namespace=ns)
    fns = common.load_source(path, ["CLIP.init_new_heads", "CLIP.get_variational_adapter_features",
                                    "CLIP.get_attention_mask", "CLIP.get_prior_dist"],
                             replace=gpu, namespace=ns)
    fwd = common.load_source(path, ["CLIP.forward"],
                             replace=gpu | {"image.type(self.dtype)": "image"}, namespace=ns)
    g = torch.Generator().manual_seed(0)
    sizes, K, M = [3, 3], 4, 5
    per = F.normalize(torch.randn(C, K, D, generator=g, dtype=torch.float64), dim=-1)
    text = F.normalize(per.mean(1), dim=-1)
    torch.manual_seed(0)
    ours = Clap4ClipNet(D).double()
    for i in range(2):
        ours.adapters.append(VariationalAdapter(D).double())
    ours.adapters[1].init_from_text(per)
    ours.eval()

    def ref_adapter(lin, sigma):
        a = ref.Adapter(D, D, sigma=sigma).double()
        a.fc[0].load_state_dict(lin.state_dict())
        return a

    mu = torch.nn.ModuleList([ref_adapter(a.mu, False) for a in ours.adapters])
    sg = torch.nn.ModuleList([ref_adapter(a.sigma, True) for a in ours.adapters])
    args = types.SimpleNamespace(sess=1, expandable_tokens=False, use_vga=True, hierarchical=False,
                                 expandable_adapter=True, compute_ram=False, lasp=True, beta=15.0,
                                 distill=False, alpha=10.0, ortho_loss=False, use_np_prior=False,
                                 frozen_prior=False, get_interclass_dist=False,
                                 get_adapter_distances=False, default_gpu=0)
    stand = types.SimpleNamespace(
        n_class=C, args=args, task_to_cls_num={0: 3, 1: 3}, frozen_text_features=text,
        frozen_text_features_individual=per, image_encoder=lambda x: x, vga=ours.vga,
        logit_scale=torch.tensor(math.log(100.0), dtype=torch.float64), forward_times=M,
        forward_times_global=M, mu_adapters=mu, sigma_adapters=sg, class_to_task_mapping={})
    for fn in ("get_variational_adapter_features", "get_attention_mask", "get_prior_dist"):
        setattr(stand, fn, types.MethodType(getattr(fns, fn), stand))
    # init_new_heads on a fresh last adapter
    fresh_mu, fresh_sg = ref_adapter(torch.nn.Linear(D, D).double(), False), \
        ref_adapter(torch.nn.Linear(D, D).double(), True)
    init_stand = types.SimpleNamespace(frozen_text_features_individual=per,
                                       mu_adapters=[fresh_mu], sigma_adapters=[fresh_sg])
    fns.init_new_heads(init_stand)
    a = max(common.max_diff(ours.adapters[1].mu.weight, fresh_mu.fc[0].weight)[0],
            common.max_diff(ours.adapters[1].sigma.weight, fresh_sg.fc[0].weight)[0])
    rows = [common.Row("clap4clip", "adapter initialisation from text (init_new_heads)", a,
                       tol=1e-12)]
    x = F.normalize(torch.randn(7, D, generator=g, dtype=torch.float64), dim=-1)
    with torch.no_grad():
        torch.manual_seed(5)
        ref_logits, _ = fwd.forward(stand, x, test=True)
        our_logits = CLAP4CLIP.__new__(CLAP4CLIP)
        mine, _, _ = ours(x, text, sizes, M, torch.Generator().manual_seed(5))
    rows.append(common.Row("clap4clip", "test-time logits, mean of 5 MC samples (forward, test)",
                           *common.max_diff(mine.mean(0), ref_logits), tol=1e-10))
    ours.train()
    ours.vga.eval()  # dropout off on both sides; the adapters have none
    y = torch.tensor([0, 1, 2, 3, 4, 5, 3])
    torch.manual_seed(9)
    out, (kl, prior, _) = fwd.forward(stand, x, y)
    ref_total = F.cross_entropy(out.reshape(-1, C), y.unsqueeze(0).expand(M, -1).reshape(-1)) \
        + kl + prior
    mine = CLAP4CLIP.loss(ours, x, y, text, per, sizes, M, 15.0, False,
                          torch.Generator().manual_seed(9))
    rows.append(common.Row("clap4clip", "training loss: CE over MC samples + KL + LASP (forward)",
                           *common.max_diff(mine, ref_total), tol=1e-10))
    del our_logits, np
    return rows


# -- survey --------------------------------------------------------------------------------
def _survey(src) -> list[common.Row]:
    from cl.reporting.memory import SURVEY_BUDGETS_MB

    sys.path.insert(0, str(src))
    try:
        from utils.model2exemplar import model2examplar  # the survey's module, unmodified
    finally:
        sys.path.remove(str(src))
    worst = 0.0
    settings = {"cifar100": (10, 10, "resnet32"), "imagenet100": (50, 5, "resnet18")}
    for dataset, (init, inc, net) in settings.items():
        for point, ours in enumerate(SURVEY_BUDGETS_MB[dataset], start=1):
            args = {"dataset": dataset, "init_cls": init, "increment": inc, "prefix": "auc",
                    "model_name": "icarl", "convnet_type": net}
            m = model2examplar(args)
            if point == 1:  # single-backbone methods keep 2,000 exemplars at the first point
                m.auc2exemplar = lambda idx, m=m: (0, m.model_params)
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                m.get_infos(point_idx=point)
            ref_mb = float(buf.getvalue().strip().split(",")[-1].strip().removesuffix("MB"))
            worst = max(worst, abs(ours - ref_mb))
    return [common.Row("memory", "AUC budgets in MB, 11 points (get_infos, iCaRL, CIFAR-100 "
                       "and ImageNet-100) vs SURVEY_BUDGETS_MB", worst, tol=1e-9)]


def run(refs: common.Refs) -> list[common.Row]:
    rows: list[common.Row] = []
    for ref, part in zip(REFERENCES, (_proof, _rapf, _engine, _clap4clip, _survey), strict=True):
        rows += part(refs.path(ref))
    return rows
