"""RAIL's fusion with zero-shot CLIP (``rail_fusion``, the ``rail`` strategy's ``predict``) against
the evaluation loops of RAIL's scripts (Xu et al., NeurIPS 2024).

References executed (linghan1997/Regression-based-Analytic-Incremental-Learning):

* ``primal_RAIL.py``: the evaluation loop's body, from ``for inputs, targets in
  tqdm(test_loader, desc=f'Evaluating on dataset-…`` through ``fusion_top5 += fusion_acc5``
  (``common.run_statements``, unchanged): zero-shot ``softmax(100·x·T)`` over every class of the
  sequence, the mask of samples whose zero-shot prediction is a learned class, the zero-padded
  regression outputs and ``(1 − w)·p + w·f(x)`` on them, ``w = 0.8`` (its config). Its
  ``continual_clip_adaptor`` is a stand-in object carrying the class's own ``encode_images``,
  ``forward`` and ``zero_shot`` methods (ast-extracted unchanged; ``clip_model.encode_image`` is
  the identity on given unit-norm features) and the head its own ``analytic_adaption`` trains
  (ast-extracted, ``np.mat(`` → ``np.asmatrix(``: NumPy 2 removed it; ``tqdm`` the identity) on a
  ``expansion_layer`` holding our random ReLU projection (weight = Wᵀ), as in the ``analytic``
  group; float32, as shipped.
* ``dual_RAIL.py``: the training-feature memory lines, from ``current_train_features = []``
  through ``alpha = krr.train(feature_memory, y)``, and the evaluation loop's body, from ``for
  inputs, targets in tqdm(test_loader, desc=f'Evaluating on dataset-…`` through ``fusion_top1 +=
  fusion_acc1[0]`` (unchanged), with ``utils.py``'s ``kernel``, ``kernel_ridge_regression`` and
  ``encode_images`` (``np.mat(`` → ``np.asmatrix(``), ``λ = 0.001``, ``γ = 0.1``.
* ``utils.py`` ``cls_acc``: ``sum(0, keepdim=True)`` → ``sum(0)`` (``float()`` of a one-element
  1-d array is an error since NumPy 2.4).

Each evaluation is one batch (the loop's ``outputs`` is then the whole domain's fused scores);
``tested_cls_num`` and ``cfg.current_class_num`` are set as the scripts' loops set them, the
domains evaluated are the ones learned so far (the config's ``eval_adapter: 1``).

Ours: ``strategies.get("rail", form=…)`` trained task by task with ``train_task`` on the
``toy-xtail`` stream's ``toy-clip`` features (4 task-agnostic domains of 6/5/3/5 classes) and its
``predict`` over the stream's whole label space (19 classes) on each learned domain's test
features; ``clip_weights`` of the reference is our zero-shot head of that label space
(transposed), so both sides fuse the same zero-shot logits. Primal: ``n_components = 1,000``,
``solver="recursive"`` (the reference's recursion; float64, the reference float32). Rows: the
function ``rail_fusion`` alone on the reference's own regression outputs (identical inputs), and
the strategy end to end (each side its own regression head). ``rail_fusion`` alone gets the
reference's own zero-shot logits (its ``zero_shot`` method, or ``100·x·T`` of the loop's
re-normalised ``test_features`` in the dual script) and regression outputs (its adaptor's
``forward``, or ``krr.predict`` on those features), zero-padded to the label space as the loops
pad them.
"""

from __future__ import annotations

import common

NAME = "rail-fusion"
DESCRIPTION = "RAIL zero-shot fusion (rail_fusion, rail predict) vs its scripts' evaluation loops"
REFERENCES = (common.Git("linghan1997/Regression-based-Analytic-Incremental-Learning",
                         "eaac644e1acc2d10e2a6863e7ba19cbf422b6461"),)
M = 1000
EVAL_FIRST = "for inputs, targets in tqdm(test_loader, desc=f'Evaluating on dataset-"


class _Stand:
    """Attribute bag (the scripts' ``cfg``, CLIP model and adaptor)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _namespace(src):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    ns = {"torch": torch, "nn": nn, "F": F, "np": np, "math": __import__("math"),
          "tqdm": lambda x, **kw: x}
    common.load_source(src / "utils.py", ["cls_acc", "kernel", "kernel_ridge_regression",
                                          "encode_images"],
                       replace={"sum(0, keepdim=True)": "sum(0)", "np.mat(": "np.asmatrix("},
                       namespace=ns)
    return ns


def _primal_adaptor(src, ns, W):
    """A stand-in ``continual_clip_adaptor`` with the class's own methods."""
    import torch
    from torch import nn

    methods = common.load_source(
        src / "primal_RAIL.py", [f"continual_clip_adaptor.{m}" for m in
                                 ("encode_images", "forward", "zero_shot", "analytic_adaption")],
        replace={"np.mat(": "np.asmatrix("}, namespace=ns)
    layer = nn.Linear(W.shape[1], W.shape[0], bias=False)
    layer.weight.data = torch.tensor(W, dtype=torch.float32)  # (M, D)
    Adaptor = type("continual_clip_adaptor", (_Stand,), {
        "encode_images": methods.encode_images, "forward": methods.forward,
        "__call__": methods.forward, "zero_shot": methods.zero_shot,
        "analytic_adaption": methods.analytic_adaption})
    return Adaptor(clip_model=_Stand(encode_image=lambda x: x.clone()), hidden_dim=W.shape[0],
                   feature_dim=W.shape[1], analytic_adaptor=None,
                   expansion_layer=nn.Sequential(layer, nn.ReLU()))


def _strategy_ctx(stream, backbone, t):
    import logging

    import torch

    from cl.core.strategy import Context

    return Context(task_index=t, task=stream[t], stream=stream,
                   label_space=stream.train_label_space(t), backbone=backbone,
                   device=torch.device("cpu"), seed=0, generator=torch.Generator().manual_seed(t),
                   logger=logging.getLogger("fidelity"), record=lambda k, v: None,
                   trained_tasks=t + 1)


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0])
    import torch

    import strategies
    from cl.core.strategy import TaskData
    from strategies.estimators.rail import rail_fusion
    from strategies.heads.base import zero_shot_weights

    stream, backbone, feats = common.toy_features("toy-xtail")
    space = stream.task_label_space(range(len(stream)))
    head = zero_shot_weights(backbone, space)  # (C, D)
    clip_weights = head.T.contiguous()
    C = len(space)
    worst = {k: [0.0, 0.0] for k in ("primal-fn", "primal", "dual-fn", "dual")}
    dis = {"primal": 0, "dual": 0}
    fused = n = 0
    for form in ("primal", "dual"):
        ns = _namespace(src)
        ours = strategies.get("rail", form=form, **({"n_components": M, "solver": "recursive"}
                                                    if form == "primal" else {}))
        cfg = _Stand(device="cpu", fusion_weight=0.8, feature_expansion=True, regularization=0.1,
                     gamma=0.1, trained_class_num=0)
        ns.update(cfg=cfg, feature_memory=None, y=None,
                  krr=ns["kernel_ridge_regression"](lamda=0.001, gamma=cfg.gamma),
                  clip_model=_Stand(encode_image=lambda x: x.clone()))
        adaptor, R = None, None
        for t in range(len(stream)):
            f = feats[(t, "train")]
            ctx = _strategy_ctx(stream, backbone, t)
            ours.train_task(TaskData(stream[t], f.y + stream.class_offsets[t], features=f.X), ctx)
            cfg.increment = stream[t].n_classes
            cfg.current_class_num = stream.class_offsets[t] + stream[t].n_classes
            loader = [(f.X[s:s + 128].clone(), f.y[s:s + 128].clone())
                      for s in range(0, len(f.y), 128)]
            if form == "primal":
                if adaptor is None:
                    adaptor = _primal_adaptor(src, ns, ours.model.projection_.components_.T)
                R = adaptor.analytic_adaption(t, cfg, loader, R)
                ns["continual_clip_adaptor"] = adaptor
            else:
                ns.update(train_loader=loader, task_id=t)
                common.run_statements(src / "dual_RAIL.py", "current_train_features = []",
                                      "alpha = krr.train(feature_memory, y)", ns)
            cfg.trained_class_num = cfg.current_class_num
            for j in range(t + 1):
                x, yj = feats[(j, "test")].X, feats[(j, "test")].y
                ns.update(test_loader=[(x.clone(), yj.clone())], test_id=j,
                          test_dataset=stream[j].name, tested_cls_num=stream.class_offsets[j], test_num=0.0, top1=0.0, top5=0.0,
                          fusion_top1=0.0, fusion_top5=0.0, clip_weights=clip_weights)
                if form == "primal":
                    common.run_statements(src / "primal_RAIL.py", EVAL_FIRST,
                                          "fusion_top5 += fusion_acc5", ns)
                    with torch.no_grad():  # the reference's own zero-shot logits and head
                        zero_shot = adaptor.zero_shot(x, clip_weights)
                        regression = adaptor(x)
                else:
                    common.run_statements(src / "dual_RAIL.py", EVAL_FIRST,
                                          "fusion_top1 += fusion_acc1[0]", ns)
                    z = ns["test_features"]  # the loop's own re-normalised features
                    zero_shot = 100.0 * z @ clip_weights
                    regression = torch.tensor(ns["krr"].predict(z, ns["feature_memory"]),
                                              dtype=torch.float)
                ref = ns["outputs"]
                learned = torch.arange(C) < cfg.current_class_num
                padded = torch.zeros(len(x), C)
                padded[:, :regression.shape[1]] = regression
                alone = rail_fusion(zero_shot, padded, learned, 0.8)
                mine = ours.predict(x, space, ctx)
                for key, value in ((f"{form}-fn", alone), (form, mine)):
                    d, r = common.max_diff(value, ref)
                    worst[key] = [max(worst[key][0], d), max(worst[key][1], r)]
                dis[form] += int((mine.argmax(1) != ref.argmax(1)).sum())
                if form == "primal":
                    fused += int(ns["mask"].sum())
                    n += len(x)
    what = f"toy-xtail × toy-clip, 4 domains, {n} test predictions over 19 classes"
    fn = "`strategies.estimators.rail.rail_fusion`"
    return [
        common.Row(fn, f"fused scores vs `primal_RAIL.py`'s loop, on its own regression outputs "
                   f"({what}; {fused} fused)", *worst["primal-fn"], dtype="float32", tol=1e-6),
        common.Row(fn, "fused scores vs `dual_RAIL.py`'s loop, on its own kernel-ridge outputs",
                   *worst["dual-fn"], dtype="float32", tol=1e-6),
        common.Row('`rail` strategy `predict` (form="primal", solver="recursive", M = 1,000)',
                   "fused scores vs `primal_RAIL.py` (its head trained by `analytic_adaption`)",
                   *worst["primal"], dtype="float32 reference", tol=1e-2, tol_on="rel",
                   note="reference as shipped (float32)"),
        common.Row('`rail` strategy `predict` (form="primal")', f"argmax disagreements ({n})",
                   dis["primal"], dtype="count", tol=0),
        common.Row('`rail` strategy `predict` (form="dual")', "fused scores vs `dual_RAIL.py` "
                   "(its memory and `kernel_ridge_regression`)", *worst["dual"],
                   dtype="float32 reference", tol=1e-2, tol_on="rel",
                   note="the reference's kernel in float32 (the features' dtype), λ = 0.001"),
        common.Row('`rail` strategy `predict` (form="dual")', f"argmax disagreements ({n})",
                   dis["dual"], dtype="count", tol=0),
    ]
