"""NMC with the SimpleCIL rule against LAMDA-PILOT's SimpleCIL code.

Reference executed: sun-hailong/LAMDA-PILOT ``models/simplecil.py`` ``Learner.replace_fc``
(prototypes: class means of the backbone's embeddings written into the head's rows) and
``backbone/linears.py`` ``CosineLinear`` (``σ·cos(x, w_c)``, σ = 1 as initialised), both
ast-extracted unchanged, on a stand-in learner whose backbone is the identity on given features
and whose ``_network.fc`` is one ``CosineLinear`` over all classes (PILOT's ``SimpleVitNet``
grows the head task by task, copying the old rows; the rows of classes not yet seen are never
read here: logits are taken over the classes seen so far).

Ours: ``NMC(metric="cosine", normalize=False)`` fed the same tasks; its scores are ``cos − 1``.
Inputs: 3 class-incremental streams: random features D = 64 (5 tasks × 4 classes), D = 512
(4 tasks × 5 classes), split digits (5 tasks × 2 classes), float64 and float32. Compared:
logits over the classes seen so far after every task (ours + 1 vs PILOT's) and predictions.
"""

from __future__ import annotations

import common

NAME = "simplecil"
DESCRIPTION = "NMC (cosine, raw features) vs LAMDA-PILOT SimpleCIL replace_fc + CosineLinear"
REFERENCES = (common.Git("sun-hailong/LAMDA-PILOT", "264745534fc2233f5a50b020e50a3472c47eb756"),)


class _IdentityNet:
    """The ``model`` ``replace_fc`` reads: ``eval()`` and an identity ``backbone``."""

    def eval(self):
        return self

    def backbone(self, data):
        return data


def _streams():
    import numpy as np
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(0)
    out = []
    for D, tasks, per in ((64, 5, 4), (512, 4, 5)):
        C = tasks * per
        centres = rng.normal(size=(C, D))
        X = np.concatenate([c + 1.5 * rng.normal(size=(60, D)) for c in centres])
        y = np.repeat(np.arange(C), 60)
        out.append((X, y, [np.arange(t * per, (t + 1) * per) for t in range(tasks)]))
    X, y = load_digits(return_X_y=True)
    out.append((X / 16.0, y, [np.arange(2 * t, 2 * t + 2) for t in range(5)]))
    return out


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0])
    import math
    from types import SimpleNamespace

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    from strategies.estimators import NMC

    lin = common.load_source(src / "backbone" / "linears.py", ["CosineLinear"],
                             namespace={"torch": torch, "nn": nn, "F": F, "math": math})
    rep = common.load_source(src / "models" / "simplecil.py", ["Learner.replace_fc"],
                             namespace={"torch": torch, "np": np})
    rows = []
    for dtype in (torch.float64, torch.float32):
        worst, dis, n = 0.0, 0, 0
        for X, y, tasks in _streams():
            fc = lin.CosineLinear(X.shape[1], int(y.max()) + 1).to(dtype)
            net = SimpleNamespace(fc=fc)
            model = _IdentityNet()
            ours = NMC(metric="cosine", normalize=False)
            test_idx = np.arange(len(y))[::5]
            train = np.setdiff1d(np.arange(len(y)), test_idx)
            seen = np.array([], dtype=int)
            for classes in tasks:
                idx = train[np.isin(y[train], classes)]
                learner = SimpleNamespace(_device="cpu", _network=net,
                                          train_dataset=SimpleNamespace(labels=y[idx]))
                loader = [(None, torch.tensor(X[idx][s:s + 64], dtype=dtype),
                           torch.tensor(y[idx][s:s + 64])) for s in range(0, len(idx), 64)]
                rep.replace_fc(learner, loader, model, {})
                ours.partial_fit(X[idx], y[idx])
                seen = np.union1d(seen, classes)
                tidx = test_idx[np.isin(y[test_idx], seen)]
                with torch.no_grad():
                    ref = fc(torch.tensor(X[tidx], dtype=dtype))["logits"][:, seen]
                mine = ours._decision_function(X[tidx])[:, np.searchsorted(ours.classes_, seen)]
                worst = max(worst, common.max_diff(mine + 1.0, ref)[0])
                dis += int(np.sum(mine.argmax(1) != ref.numpy().argmax(1)))
                n += len(tidx)
        name = str(dtype).removeprefix("torch.")
        rows.append(common.Row('`NMC(metric="cosine", normalize=False)` (SimpleCIL)',
                               "logits over the classes seen so far after every task (ours + 1)",
                               worst, dtype=f"{name} reference",
                               tol=1e-12 if dtype == torch.float64 else 1e-5))
        rows.append(common.Row('`NMC(metric="cosine", normalize=False)` (SimpleCIL)',
                               f"prediction disagreements ({n:,} predictions)", dis,
                               dtype="count", tol=0 if dtype == torch.float64 else 10,
                               note="" if dtype == torch.float64 else
                               "float32 reference: near-ties may flip"))
    return rows
