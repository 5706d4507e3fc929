"""The ``finetune`` strategy against avalanche's ``Naive`` on the same minibatches.

Reference executed: avalanche-lib's ``Naive`` (imported unmodified) with SGD (lr 0.05,
momentum 0.9), ``train_mb_size=30``, one epoch over a dataset that is our 3 epoch permutations
of the task concatenated, ``shuffle=False``: the same minibatches in the same order. Both start
from the same initial MLP (64 → 32 → 10, built by ``Finetune._build``). Ours: ``Finetune``'s own
``train_task`` on a stand-in context (the label space is all 10 classes, so its loss covers every
output, as ``Naive``'s).

Inputs: split digits (pixels / 16), 2 tasks of 2 classes × 90 examples. Compared after every
task: every parameter and the logits of 200 test images; with ``reset_optimizer_state=True``
(a fresh SGD per task, as ours) and with avalanche's default, which carries the SGD momentum
buffer across experiences (a stated deviation).
"""

from __future__ import annotations

import common

NAME = "finetune-avalanche"
DESCRIPTION = "finetune strategy vs avalanche Naive on identical minibatches"
REFERENCES = (common.PyPI("avalanche-lib", "0.6.0"),)
N, EPOCHS, BATCH, TASKS = 90, 3, 30, 2


class _Ctx:
    """The parts of ``cl.core.strategy.Context`` that ``Finetune.train_task`` reads."""

    def __init__(self, generator):
        from types import SimpleNamespace

        self.generator, self.device = generator, "cpu"
        self.stream = SimpleNamespace(n_classes=10)
        self.label_space = SimpleNamespace(class_ids=tuple(range(10)))
        self.task = SimpleNamespace(name="digits")

    def before_batch(self, x, y):
        return x, y

    def after_batch(self, loss):
        pass

    def count(self, name, value):
        pass


def _run(reset: bool):
    import copy
    import warnings
    from types import SimpleNamespace

    import torch
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
    from avalanche.training import Naive
    from sklearn.datasets import load_digits

    from strategies.finetune import Finetune

    warnings.filterwarnings("ignore", message="No loggers specified")
    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)
    test = X[-200:]
    tasks = [(X[:-200][(y[:-200] // 2) == t][:N], y[:-200][(y[:-200] // 2) == t][:N])
             for t in range(TASKS)]
    ours = Finetune(hidden=32, epochs=EPOCHS, lr=0.05, momentum=0.9, batch_size=BATCH)
    ctx = _Ctx(torch.Generator().manual_seed(0))
    ours.model = ours._build(64, 10, ctx.generator)
    ours._dims = (64, 10)
    model = copy.deepcopy(ours.model)
    datasets = []
    for x, t in tasks:  # our permutations, drawn as train_task will draw them
        g = torch.Generator()
        g.set_state(ctx.generator.get_state())
        order = torch.cat([torch.randperm(N, generator=g) for _ in range(EPOCHS)])
        datasets.append(_make_taskaware_tensor_classification_dataset(
            x[order], t[order], task_labels=0, targets=t[order].tolist()))
        ours.train_task(SimpleNamespace(features=x, targets=t), ctx)
        datasets[-1].ours = (copy.deepcopy(ours.model.state_dict()),
                             ours.model(test).detach().clone())
    bm = benchmark_from_datasets(train=datasets, test=datasets)
    naive = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05,
                                                         momentum=0.9),
                  criterion=torch.nn.CrossEntropyLoss(), train_mb_size=BATCH, train_epochs=1,
                  eval_mb_size=BATCH, device="cpu", evaluator=None)
    worst_p, worst_l = 0.0, 0.0
    for exp, ds in zip(bm.train_stream, datasets):
        naive.train(exp, shuffle=False, num_workers=0, reset_optimizer_state=reset)
        state, logits = ds.ours
        worst_p = max(worst_p, *(common.max_diff(state[k], v)[0]
                                 for k, v in model.state_dict().items()))
        model.eval()
        with torch.no_grad():
            worst_l = max(worst_l, common.max_diff(logits, model(test))[0])
    return worst_p, worst_l


def run(refs: common.Refs) -> list[common.Row]:
    refs.path(REFERENCES[0])
    rows = []
    for reset, tol in ((True, 0.0), (False, float("inf"))):
        params, logits = _run(reset)
        how = ("`reset_optimizer_state=True`" if reset else
               "avalanche's default (SGD momentum carried across experiences)")
        note = "" if reset else "stated deviation: ours starts each task with a fresh SGD"
        rows.append(common.Row("`finetune` (`Finetune.train_task`)",
                               f"parameters after each of {TASKS} tasks, {how}", params,
                               dtype="float32", tol=tol, note=note))
        rows.append(common.Row("`finetune` (`Finetune.train_task`)",
                               f"test logits after each task, {how}", logits, dtype="float32",
                               tol=tol, note=note))
    return rows
