"""GDA's KS-shrunk linear head against the GDA reference code (Wang et al., ICLR 2024).

Reference executed: mrflogs/ICLR24 ``main_few_shots.py`` ``run`` and ``utils.py`` ``cls_acc``,
ast-extracted. Changes to ``run``: ``.cuda()`` removed, ``tqdm`` is the identity, ``return
notune_acc`` → ``return locals()`` (to read ``cov_inv``, ``W``, ``b``, ``alpha``,
``test_logits``), and in the float64 run ``.float()`` → nothing (the default dtype is float64,
for its ``torch.eye``). In ``cls_acc``: ``sum(0, keepdim=True)`` → ``sum(0)`` (``float()`` of a
one-element 1-d array is an error since NumPy 2.4). Its ``clip_model.encode_image`` is the identity on given features, and
its module globals ``val_features``/``test_features`` are set as its ``main`` sets them.

Ours: ``strategies.GDA(shrinkage="ks", priors="uniform")`` on the same unit-norm features:
``precision_`` vs ``cov_inv``, ``coef_ᵀ`` vs ``W``, ``intercept_`` vs ``b``, the head's scores and
predictions on test features; ``partial_fit`` over 3 class-incremental chunks vs the same
reference run. Also the zero-shot head: ``utils.py`` ``clip_classifier`` (``.cuda()`` removed; its
``clip.tokenize`` is the model's own tokenizer) on ``cl-tiny-vit`` vs
``cl.models.prompts.zero_shot_head``, 10 class names (two with ``_``, which the reference
turns into spaces: given to ours with spaces) × 1 and 4 templates. Inputs: random class clusters (D, C, N per class) = (16, 5, 50), (64, 10, 16),
(512, 10, 4: 4-shot, N < D), (128, 20, 100), and L2-normalised digits (64, 10, all 1,797).
"""

from __future__ import annotations

import common

NAME = "gda"
DESCRIPTION = "GDA KS covariance and linear head vs mrflogs/ICLR24 run(); its zero-shot head"
REFERENCES = (common.Git("mrflogs/ICLR24", "560fe211700964c915442ff98dbe47dd09656a35"),)


class _Identity:
    def encode_image(self, x):
        return x


def _sets():
    import numpy as np
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(0)
    out = []
    for D, C, n in ((16, 5, 50), (64, 10, 16), (512, 10, 4), (128, 20, 100)):
        centres = rng.normal(size=(C, D))
        X = np.concatenate([c + rng.normal(size=(n, D)) for c in centres])
        out.append((f"clusters D={D} C={C} N={n}/class", X, np.repeat(np.arange(C), n)))
    X, y = load_digits(return_X_y=True)
    out.append(("digits", X, y))
    return out


def _zero_shot(src) -> list[common.Row]:
    from types import SimpleNamespace

    import torch

    from cl.models.backbones import create_backbone
    from cl.models.prompts import zero_shot_head

    tiny = create_backbone("cl-tiny-vit")
    ref = common.load_source(src / "utils.py", ["clip_classifier"],
                             replace={".cuda()": ""},
                             namespace={"torch": torch,
                                        "clip": SimpleNamespace(tokenize=tiny.tokenizer)})
    names = ["golden_retriever", "tabby cat", "sea_lion", "zero", "one", "two", "three", "four",
             "five", "six"]
    rows = []
    for templates in (["a photo of a {}."], ["a photo of a {}.", "a drawing of a {}.",
                                             "a {} in the wild.", "{}"]):
        ref_head = ref.clip_classifier(names, templates, tiny.model).T
        ours = zero_shot_head(tiny, [n.replace("_", " ") for n in names], templates, cache=False)
        d, r = common.max_diff(ours, ref_head)
        rows.append(common.Row("`cl.models.prompts.zero_shot_head`",
                               f"head vs `clip_classifier` (10 classes × {len(templates)} "
                               "templates, cl-tiny-vit)", d, r, dtype="float32", tol=1e-5))
    return rows


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0])
    import numpy as np
    import torch

    from strategies.estimators import GDA
    from strategies.estimators.class_stats import l2_normalize

    rng = np.random.default_rng(1)
    worst = {k: 0.0 for k in ("precision", "coef", "intercept", "scores", "chunked")}
    dis = n_pred = 0
    f32 = {"precision": 0.0, "dis": 0}
    for dtype in (torch.float64, torch.float32):
        replace = {"image, target = image.cuda(), target.cuda()": "",
                   ".cuda()": "", "return notune_acc": "return locals()"}
        if dtype == torch.float64:
            replace[".float()"] = ""
        utils = common.load_source(src / "utils.py", ["cls_acc"], namespace={"torch": torch},
                                   replace={"sum(0, keepdim=True)": "sum(0)"})
        ns = {"torch": torch, "tqdm": lambda x: x, "cls_acc": utils.cls_acc, "print": lambda *a: 0}
        ref_run = common.load_source(src / "main_few_shots.py", ["run"], replace=replace,
                                     namespace=ns).run
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            for _, X, y in _sets():
                X = l2_normalize(X.astype(np.float64))
                C = int(y.max()) + 1
                T = l2_normalize(X[rng.integers(0, len(X), 10 * C)] + 0.1 * rng.normal(
                    size=(10 * C, X.shape[1])))
                head = torch.tensor(l2_normalize(rng.normal(size=(C, X.shape[1]))).T, dtype=dtype)
                ns.update(val_features=torch.tensor(T, dtype=dtype),
                          val_labels=torch.tensor(rng.integers(0, C, len(T))),
                          test_features=torch.tensor(T, dtype=dtype),
                          test_labels=torch.tensor(rng.integers(0, C, len(T))))
                loader = [(torch.tensor(X[s:s + 64], dtype=dtype), torch.tensor(y[s:s + 64]))
                          for s in range(0, len(X), 64)]
                ref = ref_run({"augment_epoch": 1}, loader, head, _Identity())
                ours = GDA(shrinkage="ks", priors="uniform").fit(X, y)
                prec = common.max_diff(ours.precision_, ref["cov_inv"])[1]
                scores_ref = (torch.tensor(T, dtype=dtype) @ ref["W"] + ref["b"]).double().numpy()
                pred_dis = int(np.sum(ours.decision_function(T).argmax(1) != scores_ref.argmax(1)))
                if dtype == torch.float32:
                    f32["precision"] = max(f32["precision"], prec)
                    f32["dis"] += pred_dis
                    continue
                worst["precision"] = max(worst["precision"], prec)
                worst["coef"] = max(worst["coef"], common.max_diff(ours.coef_.T, ref["W"])[1])
                worst["intercept"] = max(worst["intercept"],
                                         common.max_diff(ours.intercept_, ref["b"])[1])
                worst["scores"] = max(worst["scores"],
                                      common.max_diff(ours.decision_function(T), scores_ref)[1])
                dis += pred_dis
                n_pred += len(T)
                chunked = GDA(shrinkage="ks", priors="uniform")
                for part in np.array_split(np.arange(C), 3):
                    m = np.isin(y, part)
                    chunked.partial_fit(X[m], y[m])
                worst["chunked"] = max(worst["chunked"], common.max_diff(
                    chunked.decision_function(T), scores_ref)[1])
        finally:
            torch.set_default_dtype(old)
    rows = _zero_shot(src)
    method = '`GDA(shrinkage="ks", priors="uniform")` (gda)'
    names = {"precision": "`precision_` vs `cov_inv`", "coef": "`coef_ᵀ` vs `W`",
             "intercept": "`intercept_` vs `b`", "scores": "test scores x·W + b",
             "chunked": "test scores, `partial_fit` over 3 class-incremental chunks"}
    rows += [common.Row(method, f"{names[k]}, relative (5 feature sets)", float("nan"), v,
                        tol=1e-9, tol_on="rel") for k, v in worst.items()]
    rows.append(common.Row(method, f"prediction disagreements ({n_pred} test points)", dis,
                           dtype="count", tol=0))
    rows.append(common.Row(method, "`precision_` vs `cov_inv` of the reference as shipped, "
                           "relative", float("nan"), f32["precision"], dtype="float32 reference",
                           tol=1e-3, tol_on="rel", note=f"{f32['dis']} prediction disagreements"))
    return rows
