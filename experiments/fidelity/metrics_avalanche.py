"""``forgetting_after_training`` and ``backward_transfer`` against avalanche's metrics.

Reference executed: avalanche-lib's ``Naive`` strategy with an ``EvaluationPlugin``
(``StreamForgetting``, ``StreamBWT``, accuracy), imported unmodified. A scripted model realises a
chosen accuracy matrix A exactly: inputs carry (experience j, index i, label y); after training
on experience t the model predicts y iff ``i < A[t, j]·N`` (SGD at learning rate 0 never changes
it). Matrices: a hand-made 4×4 matrix with accuracies that rise after training (where Chaudhry's
forgetting differs) and 3 random 4×4 matrices with entries k/20. Compared after every step
t ≥ 1: avalanche's stream metrics vs ours on ``A[:t+1, :t+1]``; and the accuracies avalanche
measured vs A (the scripted model is right). After the first step avalanche reports 0 where we
report NaN (a mean over no task); that step is not compared.
"""

from __future__ import annotations

import common

NAME = "metrics-avalanche"
DESCRIPTION = "forgetting and backward transfer vs avalanche's StreamForgetting / StreamBWT"
REFERENCES = (common.PyPI("avalanche-lib", "0.6.0"),)
N = 20  # examples per experience


def _matrices():
    import numpy as np

    hand = np.array([[0.90, 0.10, 0.05, 0.00], [0.95, 0.80, 0.20, 0.10],
                     [0.60, 0.85, 0.75, 0.15], [0.40, 0.50, 0.70, 1.00]])
    rng = np.random.default_rng(0)
    return [hand] + [rng.integers(0, 21, (4, 4)) / 20 for _ in range(3)]


def _avalanche_run(A):
    import torch
    from avalanche.benchmarks.scenarios import with_classes_timeline, with_task_labels
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
    from avalanche.evaluation.metrics import accuracy_metrics, bwt_metrics, forgetting_metrics
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin
    from torch import nn

    T = A.shape[0]

    class Scripted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("A", torch.tensor(A, dtype=torch.float64))
            self.register_buffer("step", torch.tensor(-1))
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            j, i, y = x[:, 0].long(), x[:, 1].long(), x[:, 2].long()
            if self.training:
                self.step.fill_(int(j.max()))
            right = i < torch.round(self.A[self.step, j] * N).long()
            pred = torch.where(right, y, (y + 1) % (2 * T))
            return 10.0 * nn.functional.one_hot(pred, 2 * T).float() + 0.0 * self.w

    def dataset(j):
        i = torch.arange(N)
        y = 2 * j + i % 2
        x = torch.stack([torch.full((N,), j), i, y], 1).float()
        return _make_taskaware_tensor_classification_dataset(x, y, task_labels=0,
                                                             targets=y.tolist())

    bm = with_task_labels(with_classes_timeline(benchmark_from_datasets(
        train=[dataset(j) for j in range(T)], test=[dataset(j) for j in range(T)])))
    model = Scripted()
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True),
                                 forgetting_metrics(stream=True), bwt_metrics(stream=True),
                                 loggers=[])
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                     criterion=nn.CrossEntropyLoss(), train_mb_size=10, train_epochs=1,
                     eval_mb_size=20, device="cpu", evaluator=evaluator)
    out = []
    for exp in bm.train_stream:
        strategy.train(exp, num_workers=0)
        out.append(dict(strategy.eval(bm.test_stream, num_workers=0)))
    return out


def run(refs: common.Refs) -> list[common.Row]:
    refs.path(REFERENCES[0])
    import warnings

    import numpy as np

    from cl.core.metrics import backward_transfer, forgetting_after_training

    warnings.filterwarnings("ignore", message="No loggers specified")
    acc = fgt = bwt = 0.0
    steps = 0
    for A in _matrices():
        T = A.shape[0]
        rows = _avalanche_run(A)
        measured = np.array([[r[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"]
                              for j in range(T)] for r in rows])
        acc = max(acc, common.max_diff(measured, A)[0])
        for t in range(1, T):
            fgt = max(fgt, abs(rows[t]["StreamForgetting/eval_phase/test_stream"]
                               - forgetting_after_training(A[:t + 1, :t + 1])))
            bwt = max(bwt, abs(rows[t]["StreamBWT/eval_phase/test_stream"]
                               - backward_transfer(A[:t + 1, :t + 1])))
            steps += 1
    what = f"4 matrices, {steps} steps t ≥ 1"
    return [
        common.Row("scripted model", f"accuracies avalanche measured vs the chosen A ({what})",
                   acc, tol=1e-12),
        common.Row("`cl.core.metrics.forgetting_after_training`",
                   f"vs avalanche StreamForgetting ({what})", fgt, tol=1e-6),
        common.Row("`cl.core.metrics.backward_transfer`", f"vs avalanche StreamBWT ({what})", bwt,
                   tol=1e-6),
    ]
