"""MagMax's task vectors, maximum-magnitude merge and schedule against the reference's own code.

Reference: ``danielm1405/magmax`` @ 4f49f18, executed from its checkout:

* ``src/merging/task_vectors.py`` imported unmodified (``TaskVector``, ``merge_max_abs``,
  ``TaskVector.apply_to``). One change of environment, not of code: the module's ``torch`` is
  a stand-in whose ``load`` passes ``weights_only=False`` (the reference ``torch.save``\\ s
  whole models and loads them with the torch of its time, whose default was that).
* ``src/utils.py``: ``cosine_lr``, ``_warmup_lr``, ``assign_learning_rate`` (ast-extracted).

Identical inputs: ``toy-clip`` as θ₀ and the weights our ``magmax`` strategy actually trained
on three ``toy-mtil`` domains (sequential fine-tuning, 6 steps each, lr 1e-3) as θ₁, θ₂, θ₃,
saved as whole models for the reference. Compared (float32, as both run):

* the task vectors ``θ_t − θ₀`` (ours: :func:`~strategies.adaptation.task_vectors.task_vector`);
* the merged vector of the three (ours: the strategy's incremental merge, kept in the strategy);
* the weights the model is evaluated with, ``θ₀ + 0.5·τ_MM`` (ours: the backbone's parameters
  after the strategy's last task; reference: ``merge_max_abs(...).apply_to(θ₀, 0.5)``);
* the learning rate of every step (ours: ``lr ×`` the strategy's ``_lr_factor``; reference:
  ``cosine_lr`` applied to an optimizer) for T = 50, warm-up 5 and warm-up 500 ≥ T.
"""

from __future__ import annotations

import common

NAME = "magmax"
DESCRIPTION = "MagMax task vectors, max-magnitude merge, merged weights and schedule"
REFERENCES = (common.Git("danielm1405/magmax", "4f49f18fb30216d3a0dbe4220b469a3273e45475"),)


class _Torch:
    """``torch`` with ``load(..., weights_only=False)`` (the reference pickles whole models)."""

    def __getattr__(self, name: str):
        import functools

        import torch

        if name == "load":
            return functools.partial(torch.load, weights_only=False)
        return getattr(torch, name)


def _trained(tmp):
    """θ₀ and the strategy after three toy-mtil tasks (its backbone holds θ₀ + 0.5·τ_MM)."""
    import copy

    import streams
    from cl.core.runner import Runner
    from cl.models.backbones import create_backbone
    from strategies.adaptation.magmax import MagMax

    backbone = create_backbone("toy-clip")
    pristine = copy.deepcopy(backbone.model)
    stream = streams.get("toy-mtil", domains=["counts", "colours", "shapes"], n_train=8,
                         n_test=4, seed=0)
    strategy = MagMax(iterations=6, batch_size=8, warmup=1, lr=1e-3)
    thetas = []
    original = strategy._end_task

    def keep(model, data, ctx):
        thetas.append({k: p.detach().clone() for k, p in strategy.trained(model).items()})
        original(model, data, ctx)

    strategy._end_task = keep
    Runner(stream, strategy, backbone, out_dir=tmp / "run", seed=0, progress=False).run()
    return pristine, backbone.model, strategy, thetas


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0])
    import copy
    import tempfile
    from pathlib import Path

    import torch

    from strategies.adaptation.magmax import MagMax
    from strategies.adaptation.task_vectors import task_vector

    ref = common.import_file(src / "src" / "merging" / "task_vectors.py", "magmax_task_vectors")
    ref.torch = _Torch()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pristine, merged_model, strategy, thetas = _trained(tmp)
        keys = list(thetas[0])
        zero = tmp / "zeroshot.pt"
        torch.save(pristine, zero)
        ref_vectors, ours, diffs = [], [], []
        base = {k: p.detach() for k, p in pristine.named_parameters() if k in keys}
        for i, theta in enumerate(thetas):
            model = copy.deepcopy(pristine)
            with torch.no_grad():
                for k, p in model.named_parameters():
                    if k in theta:
                        p.copy_(theta[k])
            path = tmp / f"finetuned_{i}.pt"
            torch.save(model, path)
            ref_vectors.append(ref.TaskVector(str(zero), str(path)))
            ours.append(task_vector(base, theta))
            diffs.append(max(common.max_diff(ours[-1][k], ref_vectors[-1].vector[k])[0]
                             for k in keys))
        rows.append(common.Row(
            method="magmax", compared="task vectors θ_t − θ₀ (3 toy-mtil tasks, image tower)",
            max_abs=max(diffs), dtype="float32", tol=0.0))
        ref_merged = ref.merge_max_abs(ref_vectors)
        mine = strategy.merged_vector()
        d = [common.max_diff(mine[k], ref_merged.vector[k]) for k in keys]
        rows.append(common.Row(
            method="magmax", compared="merged vector τ_MM (strategy's incremental merge)",
            max_abs=max(a for a, _ in d), max_rel=max(r for _, r in d), dtype="float32",
            tol=0.0))
        applied = ref_merged.apply_to(str(zero), scaling_coef=0.5).state_dict()
        now = dict(merged_model.named_parameters())
        d = [common.max_diff(now[k], applied[k]) for k in keys]
        rows.append(common.Row(
            method="magmax", compared="evaluated weights θ₀ + 0.5·τ_MM after the last task",
            max_abs=max(a for a, _ in d), max_rel=max(r for _, r in d), dtype="float32",
            tol=0.0))
    utils = common.load_source(src / "src" / "utils.py",
                               ["assign_learning_rate", "_warmup_lr", "cosine_lr"],
                               namespace={"np": __import__("numpy")})
    worst = 0.0
    for total, warmup in ((50, 5), (50, 500)):
        lr = 1e-5
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
        adjust = utils.cosine_lr(opt, lr, warmup, total)
        ours_s = MagMax(warmup=warmup, lr=lr)
        for step in range(total):
            adjust(step)
            worst = max(worst, abs(opt.param_groups[0]["lr"] - lr * ours_s._lr_factor(step, total)))
    rows.append(common.Row(method="magmax", compared="learning rate per step (T=50; warm-up 5, 500)",
                           max_abs=worst, dtype="float64", tol=1e-20))
    return rows
