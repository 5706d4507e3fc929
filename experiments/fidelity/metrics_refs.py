"""MTIL Transfer/Average/Last and Chaudhry forgetting against ZSCL's and continuum's code.

References executed:

* Thunderbeee/ZSCL ``mtil/results.ipynb``: the ``statistics`` function of its first code cell,
  ast-extracted from the notebook's JSON, run on every published 11-task matrix
  ``mtil/results/*.npy`` (as its ``visualize``: ``reshape(11, -1)``, CIFAR-10 column deleted,
  ``order=2`` for ``t9_*``). Changes: ``display``, ``print`` and ``pd.DataFrame`` (only displayed) stubbed, and ``return transfer,
  avg, last`` appended (the function only prints rounded values).
* Continvvm/continuum ``continuum/metrics/metrics.py`` ``forgetting`` and ``_get_R_ij``,
  ast-extracted unchanged, fed predictions that realise each matrix exactly (1,000 test
  examples per task, evaluation on the tasks seen so far, as its ``Logger``): the ZSCL matrices
  (fractions, rounded to 1/1,000) and 20 random 6×6 matrices.

Ours: ``cl.core.metrics.mtil_summary`` (compared in percentage points) and
``cl.core.metrics.forgetting``.
"""

from __future__ import annotations

import common

NAME = "metrics-refs"
DESCRIPTION = "MTIL Transfer/Average/Last vs ZSCL statistics; forgetting vs continuum"
REFERENCES = (common.Git("Thunderbeee/ZSCL", "b96e71423e2cbd592ddd229aaf2f1e889b86f1af"),
              common.Git("Continvvm/continuum", "43ba0090dec7e5d6976c57df05cb5ef5225e88f2"))
N = 1000


def _statistics(zscl):
    import json
    import tempfile
    from pathlib import Path
    from types import SimpleNamespace

    import numpy as np

    cells = json.loads((zscl / "mtil" / "results.ipynb").read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if "def statistics" in "".join(c["source"]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results_ipynb_cell.py"
        path.write_text(source)
        return common.load_source(
            path, ["statistics"],
            replace={'    print("last: ", f(last))': '    print("last: ", f(last))\n'
                     "    return transfer, avg, last"},
            namespace={"np": np, "pd": SimpleNamespace(DataFrame=lambda a: a),
                       "display": lambda *a: None,
                       "print": lambda *a: None}).statistics


def _realise(A):
    """continuum's inputs for matrix A: per row i, predictions/targets/tasks of tasks 0..i."""
    import numpy as np

    preds, targets, tasks = [], [], []
    for i in range(A.shape[0]):
        p, t, k = [], [], []
        for j in range(i + 1):
            right = round(float(A[i, j]) * N)
            y = np.full(N, j)
            p.append(np.where(np.arange(N) < right, y, y + 1))
            t.append(y)
            k.append(np.full(N, j))
        preds.append(np.concatenate(p))
        targets.append(np.concatenate(t))
        tasks.append(np.concatenate(k))
    return preds, targets, tasks


def run(refs: common.Refs) -> list[common.Row]:
    zscl, continuum = (refs.path(r) for r in REFERENCES)
    import numpy as np

    from cl.core.metrics import forgetting, mtil_summary

    statistics = _statistics(zscl)
    cont = common.load_source(continuum / "continuum" / "metrics" / "metrics.py",
                              ["forgetting", "_get_R_ij"], namespace={"np": np})
    files = sorted((zscl / "mtil" / "results").glob("*.npy"))
    worst, matrices = 0.0, []
    for f in files:
        arr = np.load(f).reshape(11, -1)
        order = 2 if f.name.startswith("t9_") else 1
        transfer, avg, last = statistics(arr, order=order)
        A = np.delete(arr, 2, axis=1)
        if order == 2:
            idx = [9, 6, 7, 8, 5, 10, 0, 1, 3, 4, 2]
            A = A[idx][:, idx]
        ours = {k: 100 * v for k, v in mtil_summary(A / 100).items()}
        worst = max(worst, abs(ours["transfer"] - transfer.mean()),
                    abs(ours["average"] - avg.mean()), abs(ours["last"] - last.mean()))
        matrices.append(np.round(A / 100, 3))
    rows = [common.Row("`cl.core.metrics.mtil_summary` (Transfer, Average, Last)",
                       f"vs ZSCL `statistics` on its {len(files)} published 11-task matrices",
                       worst, dtype="float64 (percentage points)", tol=1e-10)]
    rng = np.random.default_rng(0)
    matrices += [rng.integers(0, N + 1, (6, 6)) / N for _ in range(20)]
    worst = max(abs(forgetting(A) - cont.forgetting(*_realise(A))) for A in matrices)
    rows.append(common.Row("`cl.core.metrics.forgetting` (Chaudhry et al.)",
                           f"vs continuum `forgetting` ({len(files)} ZSCL + 20 random matrices, "
                           "realised as predictions)", worst, tol=1e-12))
    return rows
