"""RanPAC, FeCAM and RanDumb (random-feature LDA) against their reference code.

References executed:

* RanPAC (``RanPAC.py``): ``Learner.replace_fc`` and ``Learner.optimise_ridge_parameter``,
  ast-extracted and called on a stand-in learner (``_network.convnet`` the identity on given
  features, ``fc`` holding ``W_rand`` and ``weight``), with ``utils/toolkit.py``'s
  ``target2onehot`` imported unmodified. Changes: ``.cuda()`` removed and
  ``.to(device='cuda')`` → ``.to(device='cpu')``. Both sides get the same ``W_rand`` (ours,
  drawn by ``RandomReLUFeatures``) and each task's features in the same order (our seeded
  shuffle, which the reference's shuffled loader plays the role of). The reference runs in
  float64 (torch default dtype float64) and, as published, in float32.
* FeCAM (``FeCAM_vit_cifar100.py`` and ``FeCAM_vit_imagenet-r.py``): ``shrink_cov`` (α₁, α₂ =
  1, 0 and 10, 10 hard-coded in the two files), ``normalize_cov`` and ``_mahalanobis``,
  ast-extracted unchanged, on the class means and ``np.cov`` of L2-normalised features, as the
  files' task loops compute them.
* RanDumb (``src/main.py``): the script itself run with ``runpy`` (unmodified; ``sys.argv`` set to
  ``--embed --embed_mode RanDumb --model SLDA``, its feature files written as ``.npy`` into a
  temporary directory, ``np.random.seed`` fixed since it draws ``RBFSampler`` from the global
  generator). Ours: ``KLDA`` with the same ``random_state`` and the reference's ``gamma``, fed
  5 class-incremental tasks.
* RAIL primal (``primal_RAIL.py``): ``continual_clip_adaptor.analytic_adaption``, ast-extracted
  (``np.mat`` → ``np.asmatrix``: NumPy 2 removed it; ``tqdm`` the identity), on a stand-in
  adaptor whose ``encode_images`` is the identity on given unit-norm features and whose
  ``expansion_layer`` holds our random ReLU projection (weight = Wᵀ); batches of 128, run as
  shipped in float32, vs ``RAIL(form="primal")`` on the same features, 3 domains.
* RAIL dual (``utils.py``): ``kernel`` and ``kernel_ridge_regression`` (``np.mat`` →
  ``np.asmatrix``), refitted on every stored feature after each domain with ``dual_RAIL.py``'s
  λ = 0.001 and γ = 0.1, vs ``RAIL(form="dual")``; float64 features.

Inputs: sklearn digits (pixels / 16, D = 64, 1,797 samples: 1,257 train / 540 test, split as
``train_test_split(random_state=0, test_size=0.3)``), 5 class-incremental tasks of 2 classes.
"""

from __future__ import annotations

import common

NAME = "analytic"
DESCRIPTION = "RanPAC, FeCAM, RanDumb random-feature LDA and RAIL primal/dual vs their code"
REFERENCES = (
    common.Git("McDonnell-Research-Lab/RanPAC", "cf4b301d18b0c27db030f4371b72b768005ae58a"),
    common.Git("dipamgoswami/FeCAM", "d2479b7bc9c3e704b0835ccd5928a2d7e0df5a09"),
    common.Git("drimpossible/RanDumb", "14a51ee0c045bff642f6ffbfe481efa4d49a3033"),
    common.Git("linghan1997/Regression-based-Analytic-Incremental-Learning",
               "eaac644e1acc2d10e2a6863e7ba19cbf422b6461"),
)
ILL = 1e12  # condition numbers above this are reported as ill-conditioned


def _digits():
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.3, random_state=0)
    tasks = [np.isin(ytr, [2 * t, 2 * t + 1]) for t in range(5)]
    return Xtr, Xte, ytr, yte, tasks


def _ranpac_reference(src):
    import logging

    import numpy as np
    import torch
    from torch.nn import functional as F

    toolkit = common.load_source(src / "utils" / "toolkit.py", ["target2onehot"],
                                 namespace={"torch": torch})
    return common.load_source(
        src / "RanPAC.py", ["Learner.replace_fc", "Learner.optimise_ridge_parameter"],
        replace={"data=data.cuda()": "data=data", "label=label.cuda()": "label=label",
                 "to(device='cuda')": "to(device='cpu')"},
        namespace={"torch": torch, "np": np, "F": F, "logging": logging,
                   "target2onehot": toolkit.target2onehot})


class _Stand:
    """Attribute bag for the reference's ``self``, ``self._network`` and ``self._network.fc``."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def eval(self):
        return self


def _ranpac(src) -> list[common.Row]:
    import numpy as np
    import torch

    from strategies.estimators.ranpac import RanPAC

    Xtr, Xte, ytr, _, tasks = _digits()
    M = 1000
    ref = _ranpac_reference(src)
    rows = []
    for dtype in (torch.float64, torch.float32):
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            ours = RanPAC(n_components=M, random_state=0)
            W = None
            ln = _Stand()
            learner = None
            seen = np.array([], dtype=int)
            good = {"head": 0.0, "logits": 0.0, "dis": 0, "n": 0}
            bad = {"head": 0.0, "logits": 0.0, "dis": 0, "n": 0}
            conds, lam_equal, bad_conds = [], 0, []
            for t, mask in enumerate(tasks):
                X, y = Xtr[mask], ytr[mask]
                ours.partial_fit(X, y)
                if W is None:
                    W = torch.tensor(ours.projection_.components_, dtype=dtype)
                    fc = _Stand(W_rand=W, use_RP=True, weight=None)
                    ln = _Stand(convnet=lambda d: d, fc=fc)
                    learner = _Stand(_network=ln, args={"use_RP": True, "M": M}, W_rand=W,
                                     Q=0, G=0, total_classnum=10)
                seen = np.union1d(seen, y)
                ln.fc.weight = torch.zeros(seen.size, M)
                order = np.random.default_rng([0, t]).permutation(y.size)  # ours' λ split
                loader = [(None, torch.tensor(X[order][s:s + 64], dtype=dtype),
                           torch.tensor(y[order][s:s + 64])) for s in range(0, y.size, 64)]
                chosen = []

                def opt(F_, Y_, _chosen=chosen, _learner=learner):
                    lam = ref.optimise_ridge_parameter(_learner, F_, Y_)
                    _chosen.append(lam)
                    return lam

                learner.optimise_ridge_parameter = opt
                ref.replace_fc(learner, loader)
                lam_equal += int(np.isclose(chosen[0], ours.alpha_))
                G = learner.G.double().numpy()
                eig = np.linalg.eigvalsh(G) + chosen[0]
                cond = float(eig.max() / eig.min())
                conds.append(cond)
                head_ref = ln.fc.weight.double().numpy()
                H = np.maximum(Xte @ W.double().numpy(), 0)
                cols = np.searchsorted(ours.classes_, seen)
                logit_ref = H @ head_ref.T
                logit_ours = ours._decision_function(Xte)[:, cols]
                acc = bad if cond > ILL else good
                if cond > ILL:
                    bad_conds.append(cond)
                acc["head"] = max(acc["head"], common.max_diff(ours.ridge_.coef_[cols],
                                                               head_ref)[1])
                acc["logits"] = max(acc["logits"], common.max_diff(logit_ours, logit_ref)[0])
                acc["dis"] += int(np.sum(logit_ours.argmax(1) != logit_ref.argmax(1)))
                acc["n"] += len(Xte)
        finally:
            torch.set_default_dtype(old)
        name = str(dtype).removeprefix("torch.")
        cond_txt = ", ".join(f"{c:.1e}" for c in conds)
        note = f"λ equal on {lam_equal}/5 tasks; cond(G + λI) per task: {cond_txt}"
        if dtype == torch.float32:  # as published: float32 solves; one row over all tasks
            merged = {k: max(good[k], bad[k]) if k != "dis" and k != "n" else good[k] + bad[k]
                      for k in good}
            groups = (("reference as published in float32, all tasks", merged, float("inf"),
                       0.01),)
        else:
            groups = (("cond(G + λI) ≤ 1e12", good, 1e-8, 0),
                      ("cond(G + λI) > 1e12", bad, 0.1, 0.01))
        for label, acc, tol_head, tol_dis in groups:
            if acc["n"] == 0:
                continue
            rows.append(common.Row("`RanPAC` (ranpac)", f"head, relative ({label})",
                                   float("nan"), acc["head"], dtype=name, tol=tol_head,
                                   tol_on="rel", note=note))
            rows.append(common.Row("`RanPAC` (ranpac)", f"test logits ({label})", acc["logits"],
                                   dtype=name, tol=float("inf"), note="reported, not bounded"))
            rows.append(common.Row("`RanPAC` (ranpac)",
                                   f"prediction disagreements, fraction of {acc['n']} ({label})",
                                   acc["dis"] / acc["n"], dtype=name, tol=tol_dis))
    return rows


def _fecam(src) -> list[common.Row]:
    import numpy as np

    from strategies.estimators.class_stats import l2_normalize
    from strategies.estimators.fecam import FeCAM

    rng = np.random.default_rng(0)
    C, D, n = 10, 64, 40
    centres = rng.normal(size=(C, D))
    X = np.concatenate([c + 0.8 * rng.normal(size=(n, D)) for c in centres])
    y = np.repeat(np.arange(C), n)
    test = rng.normal(size=(200, D)) + centres[rng.integers(0, C, 200)]
    rows = []
    for fname, (a1, a2) in (("FeCAM_vit_cifar100.py", (1, 0)),
                            ("FeCAM_vit_imagenet-r.py", (10, 10))):
        ref = common.load_source(src / fname, ["shrink_cov", "normalize_cov", "_mahalanobis"],
                                 namespace={"np": np})
        Xn, Tn = l2_normalize(X), l2_normalize(test)
        means = [Xn[y == c].mean(0) for c in range(C)]
        covs = ref.normalize_cov([ref.shrink_cov(np.cov(Xn[y == c].T)) for c in range(C)])
        dist_ref = np.array([ref._mahalanobis(Tn - means[c], covs[c]) for c in range(C)]).T
        ours = FeCAM(alpha1=a1, alpha2=a2)
        for t in range(5):  # class-incremental, 2 classes a task
            m = np.isin(y, [2 * t, 2 * t + 1])
            ours.partial_fit(X[m], y[m])
        dist_ours = -ours.decision_function(test)
        d, r = common.max_diff(dist_ours, dist_ref)
        rows.append(common.Row(f"`FeCAM(alpha1={a1}, alpha2={a2})` (fecam)",
                               f"Mahalanobis distances vs `{fname}` (10 classes, D = 64)", d, r,
                               tol=1e-10))
        dis = int(np.sum(dist_ours.argmin(1) != dist_ref.argmin(1)))
        rows.append(common.Row(f"`FeCAM(alpha1={a1}, alpha2={a2})` (fecam)",
                               "prediction disagreements (200 test points)", dis, dtype="count",
                               tol=0))
    return rows


def _randumb(src) -> list[common.Row]:
    import logging
    import runpy
    import sys
    import tempfile
    from pathlib import Path

    import numpy as np

    from strategies.estimators.klda import KLDA

    Xtr, Xte, ytr, yte, tasks = _digits()
    M = 500
    with tempfile.TemporaryDirectory() as tmp:
        for name, arr in (("train_features", Xtr), ("train_labels", ytr),
                          ("test_features", Xte), ("test_labels", yte)):
            np.save(Path(tmp) / f"mnist_{name}.npy", arr)
        argv = sys.argv
        sys.argv = ["main.py", "--dataset", "mnist", "--model", "SLDA", "--embed",
                    "--embed_mode", "RanDumb", "--embed_dim", str(M), "--feature_path", tmp,
                    "--log_dir", str(Path(tmp) / "logs")]
        np.random.seed(5)
        try:
            ref = runpy.run_path(str(src / "src" / "main.py"), run_name="__main__")
        finally:
            sys.argv = argv
            for h in list(logging.getLogger("__main__").handlers):
                logging.getLogger("__main__").removeHandler(h)
                h.close()
    rows = []
    ours_map = KLDA(n_components=M, random_state=5, gamma=ref["embedder"]._gamma).fit(Xtr[tasks[0]],
                                                                                   ytr[tasks[0]])
    d, _ = common.max_diff(ours_map.features_.transform(Xte).astype(np.float64),
                           ref["test_X"])
    rows.append(common.Row("`RandomFourierFeatures` in `KLDA`",
                           "test features vs the script's RBFSampler (its γ given to ours)", d,
                           tol=1e-6, dtype="float32", note="ours computed in float32"))
    for shrinkage in (0.1, "ks"):
        for priors in ("empirical", "uniform"):
            ours = KLDA(n_components=M, random_state=5, gamma=ref["embedder"]._gamma,
                        shrinkage=shrinkage, priors=priors)
            for m in tasks:
                ours.partial_fit(Xtr[m], ytr[m])
            pred = ours.predict(Xte)
            agree = float(np.mean(pred == ref["preds"]))
            rows.append(common.Row(
                f"`KLDA(shrinkage={shrinkage!r}, priors=\"{priors}\")` (klda)",
                "prediction disagreement fraction vs RanDumb's LDA(lsqr, OAS) (540 test)",
                1 - agree, dtype="fraction", tol=0.02,
                note=f"accuracy ours {np.mean(pred == yte):.3f}, reference "
                     f"{np.mean(ref['preds'] == yte):.3f}"))
    return rows


def run(refs: common.Refs) -> list[common.Row]:
    ranpac, fecam, randumb, rail = (refs.path(r) for r in REFERENCES)
    return _ranpac(ranpac) + _fecam(fecam) + _randumb(randumb) + _rail(rail) + _rail_dual(rail)


def _rail(src) -> list[common.Row]:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    from strategies.estimators.class_stats import l2_normalize
    from strategies.estimators.rail import RAIL

    ref = common.load_source(src / "primal_RAIL.py", ["continual_clip_adaptor.analytic_adaption"],
                             replace={"np.mat(": "np.asmatrix("},
                             namespace={"torch": torch, "nn": nn, "F": F, "np": np,
                                        "tqdm": lambda x, **kw: x}).analytic_adaption
    rng = np.random.default_rng(0)
    D, M, shots, sizes = 64, 1500, 16, (5, 4, 6)
    centres = rng.normal(size=(sum(sizes), D))
    ours = RAIL(form="primal", n_components=M, random_state=0, solver="recursive")
    auto = RAIL(form="primal", n_components=M, random_state=0)  # the default: dual, then G
    me, R, start = None, None, 0
    worst = {"out": 0.0, "out_rel": 0.0, "R": 0.0, "auto": 0.0, "auto_rel": 0.0}
    dis = n = 0
    for task, size in enumerate(sizes):
        classes = np.arange(start, start + size)
        X = l2_normalize(np.concatenate([centres[c] + 0.3 * rng.normal(size=(shots, D))
                                         for c in classes]))
        y = np.repeat(classes, shots)
        order = rng.permutation(len(y))
        X, y = X[order], y[order]
        ours.partial_fit(X, y)
        auto.partial_fit(X, y)
        if me is None:
            W = torch.tensor(ours.projection_.components_.T, dtype=torch.float32)  # (M, D)
            layer = nn.Linear(D, M, bias=False)
            layer.weight.data = W
            me = _Stand(encode_images=lambda x: x, expansion_layer=nn.Sequential(layer, nn.ReLU()),
                        hidden_dim=M, feature_dim=D, analytic_adaptor=None)
        cfg = _Stand(feature_expansion=True, current_class_num=start + size, increment=size,
                     trained_class_num=start, regularization=0.1, device="cpu")
        loader = [(torch.tensor(X[s:s + 128], dtype=torch.float32),
                   torch.tensor(y[s:s + 128] - start)) for s in range(0, len(y), 128)]
        R = ref(me, task, cfg, loader, R)
        start += size
        test = l2_normalize(centres[:start] + 0.3 * rng.normal(size=(start, D)))
        with torch.no_grad():
            out_ref = me.analytic_adaptor(me.expansion_layer(torch.tensor(test, dtype=torch.float32)))
        out_ours = ours._decision_function(test)
        d, r = common.max_diff(out_ours, out_ref)
        worst["out"], worst["out_rel"] = max(worst["out"], d), max(worst["out_rel"], r)
        worst["R"] = max(worst["R"], common.max_diff(ours.ridge_.inverse_, R)[1])
        d, r = common.max_diff(auto._decision_function(test), out_ref)
        worst["auto"], worst["auto_rel"] = max(worst["auto"], d), max(worst["auto_rel"], r)
        dis += int(np.sum(out_ours.argmax(1) != out_ref.numpy().argmax(1)))
        n += start
    method = '`RAIL(form="primal", solver="recursive")` (rail)'
    what = "3 domains of 5/4/6 classes, 16 shots, D = 64, M = 1,500"
    return [
        common.Row('`RAIL(form="primal")` (rail, default `solver="auto"`: dual form here)',
                   f"regression outputs on test features ({what})", worst["auto"],
                   worst["auto_rel"], dtype="float32 reference", tol=1e-2, tol_on="rel",
                   note="reference as shipped (float32); the same head solved as Hᵀ(HHᵀ + λI)⁻¹Y"),
        common.Row(method, f"regression outputs on test features ({what})", worst["out"],
                   worst["out_rel"], dtype="float32 reference", tol=1e-2, tol_on="rel",
                   note="reference as shipped (float32)"),
        common.Row(method, "R = (G + λI)⁻¹ after each domain, relative", float("nan"),
                   worst["R"], dtype="float32 reference", tol=1e-3, tol_on="rel"),
        common.Row(method, f"argmax disagreements ({n} test points over the 3 domains)", dis,
                   dtype="count", tol=0),
    ]


def _rail_dual(src) -> list[common.Row]:
    import math

    import numpy as np
    import torch

    from strategies.estimators.class_stats import l2_normalize
    from strategies.estimators.rail import RAIL

    ref = common.load_source(src / "utils.py", ["kernel", "kernel_ridge_regression"],
                             replace={"np.mat(": "np.asmatrix("},
                             namespace={"torch": torch, "np": np, "math": math})
    rng = np.random.default_rng(1)
    D, shots, sizes = 64, 16, (5, 4, 6)
    C = sum(sizes)
    centres = rng.normal(size=(C, D))
    ours = RAIL(form="dual")
    krr = ref.kernel_ridge_regression(lamda=0.001, gamma=0.1)  # dual_RAIL.py's values
    seen_X, seen_y, start, worst, worst_rel, dis, n = [], [], 0, 0.0, 0.0, 0, 0
    for size in sizes:
        classes = np.arange(start, start + size)
        X = l2_normalize(np.concatenate([centres[c] + 0.3 * rng.normal(size=(shots, D))
                                         for c in classes]))
        y = np.repeat(classes, shots)
        ours.partial_fit(X, y)
        seen_X.append(X)
        seen_y.append(y)
        start += size
        Xall, yall = np.concatenate(seen_X), np.concatenate(seen_y)
        Y = np.eye(start)[yall]
        krr.train(torch.tensor(Xall), Y)
        test = l2_normalize(centres[:start] + 0.3 * rng.normal(size=(start, D)))
        out_ref = np.asarray(krr.predict(torch.tensor(test), torch.tensor(Xall)))
        out_ours = ours._decision_function(test)
        d, r = common.max_diff(out_ours, out_ref)
        worst, worst_rel = max(worst, d), max(worst_rel, r)
        dis += int(np.sum(out_ours.argmax(1) != out_ref.argmax(1)))
        n += start
    method = '`RAIL(form="dual")` (rail)'
    return [common.Row(method, "kernel ridge outputs vs `kernel_ridge_regression` refitted on all "
                       "stored features (3 domains, λ = 0.001, γ = 0.1)", worst, worst_rel,
                       tol=1e-9),
            common.Row(method, f"argmax disagreements ({n} test points)", dis, dtype="count",
                       tol=0)]
