"""``cl.core.metrics`` forgetting/BWT against avalanche's own metrics on a real avalanche run.

A real avalanche benchmark (4 experiences of 20 examples, 2 classes each) is
trained with avalanche's ``Naive`` strategy and SGD at learning rate 0 and
evaluated after every experience by a real ``EvaluationPlugin``. The model is
scripted so that after training step ``t`` it classifies exactly
``A[t, j] * 20`` examples of experience ``j`` correctly: every input carries
its experience id, its index and its label, and the model remembers the last
experience it was trained on. So avalanche measures a chosen accuracy matrix
``A``, and its metrics can be compared with ours on the same sequence.

Correspondence (avalanche 0.6, ``avalanche/evaluation/metrics/forgetting_bwt.py``):

- ``ExperienceForgetting`` of experience ``j`` after step ``t`` =
  ``A[j, j] - A[t, j]``: its reference ("initial") is the accuracy measured
  in the evaluation right after training on ``j``, not the maximum.
- ``StreamForgetting`` after step ``t`` = ``mean_{j<t} (A[j, j] - A[t, j])`` =
  ``cl.core.metrics.forgetting_after_training(A[:t+1, :t+1])``: the experience just
  trained only updates its reference, so it does not enter the mean.
- ``StreamBWT`` = ``-StreamForgetting`` = ``cl.core.metrics.backward_transfer``.
- After the first step avalanche reports 0 (a mean of nothing); we report NaN.
- ``cl.core.metrics.forgetting`` (Chaudhry et al. 2018, max over past steps) is a
  different quantity; it differs when an accuracy rises after training.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cl.core.metrics import backward_transfer, forgetting, forgetting_after_training

pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")

N = 20  # examples per experience
T = 4
A = np.array(
    [
        [0.90, 0.10, 0.05, 0.00],
        [0.95, 0.80, 0.20, 0.10],  # task 0 improves after training task 1
        [0.60, 0.85, 0.75, 0.15],  # task 1 improves too
        [0.40, 0.50, 0.70, 1.00],
    ]
)


class ScriptedModel(nn.Module):
    """Inputs ``(experience j, index i, label y)``; predicts ``y`` iff ``i < A[t, j] * N``,
    where ``t`` is the last experience seen in training mode, else class ``y + 1``."""

    def __init__(self, A: np.ndarray, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("A", torch.tensor(A, dtype=torch.float64))
        self.register_buffer("step", torch.tensor(-1))
        self.w = nn.Parameter(torch.zeros(1))  # trained with lr 0: never changes
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        j, i, y = x[:, 0].long(), x[:, 1].long(), x[:, 2].long()
        if self.training:
            self.step.fill_(int(j.max()))
        correct = i < torch.round(self.A[self.step, j] * N).long()
        pred = torch.where(correct, y, (y + 1) % self.n_classes)
        return 10.0 * nn.functional.one_hot(pred, self.n_classes).float() + 0.0 * self.w


def _benchmark():
    from avalanche.benchmarks.scenarios import with_classes_timeline, with_task_labels
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

    def dataset(j: int):
        i = torch.arange(N)
        y = 2 * j + i % 2
        x = torch.stack([torch.full((N,), j), i, y], 1).float()
        return _make_taskaware_tensor_classification_dataset(x, y, task_labels=0, targets=y.tolist())

    bm = benchmark_from_datasets(train=[dataset(j) for j in range(T)],
                                 test=[dataset(j) for j in range(T)])
    return with_task_labels(with_classes_timeline(bm))


@pytest.fixture(scope="module")
def avalanche_run() -> list[dict[str, float]]:
    """Metrics avalanche's EvaluationPlugin reports after each training step."""
    from avalanche.evaluation.metrics import accuracy_metrics, bwt_metrics, forgetting_metrics
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin

    bm = _benchmark()
    model = ScriptedModel(A, 2 * T)
    evaluator = EvaluationPlugin(
        accuracy_metrics(experience=True),
        forgetting_metrics(experience=True, stream=True),
        bwt_metrics(experience=True, stream=True),
        loggers=[],
    )
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                     criterion=nn.CrossEntropyLoss(), train_mb_size=8, train_epochs=1,
                     eval_mb_size=16, device="cpu", evaluator=evaluator)
    rows = []
    for exp in bm.train_stream:
        strategy.train(exp, num_workers=0)
        rows.append(dict(strategy.eval(bm.test_stream, num_workers=0)))
    assert float(model.w.detach()) == 0.0  # the scripted behaviour was not trained away
    return rows


def _exp(name: str, j: int) -> str:
    return f"{name}/eval_phase/test_stream/Task000/Exp{j:03d}"


def test_scripted_run_measures_the_chosen_matrix(avalanche_run: list[dict[str, float]]) -> None:
    measured = np.array([[row[_exp("Top1_Acc_Exp", j)] for j in range(T)] for row in avalanche_run])
    np.testing.assert_allclose(measured, A, atol=1e-9)


@pytest.mark.parametrize("t", range(1, T))
def test_stream_forgetting_equals_forgetting_after_training(
    avalanche_run: list[dict[str, float]], t: int
) -> None:
    ours = forgetting_after_training(A[: t + 1, : t + 1])
    assert avalanche_run[t]["StreamForgetting/eval_phase/test_stream"] == pytest.approx(ours, abs=1e-6)


@pytest.mark.parametrize("t", range(1, T))
def test_stream_bwt_equals_backward_transfer(avalanche_run: list[dict[str, float]], t: int) -> None:
    ours = backward_transfer(A[: t + 1, : t + 1])
    assert avalanche_run[t]["StreamBWT/eval_phase/test_stream"] == pytest.approx(ours, abs=1e-6)


def test_experience_forgetting_is_drop_from_just_after_training(
    avalanche_run: list[dict[str, float]],
) -> None:
    last = avalanche_run[-1]
    for j in range(T - 1):
        assert last[_exp("ExperienceForgetting", j)] == pytest.approx(A[j, j] - A[T - 1, j], abs=1e-6)
        assert last[_exp("ExperienceBWT", j)] == pytest.approx(A[T - 1, j] - A[j, j], abs=1e-6)
    # the experience trained last has no forgetting value yet
    assert _exp("ExperienceForgetting", T - 1) not in last


def test_first_step_avalanche_zero_ours_undefined(avalanche_run: list[dict[str, float]]) -> None:
    assert avalanche_run[0]["StreamForgetting/eval_phase/test_stream"] == 0.0
    assert math.isnan(forgetting_after_training(A[:1, :1]))


def test_chaudhry_forgetting_is_not_avalanche_forgetting(
    avalanche_run: list[dict[str, float]],
) -> None:
    # A[1, 0] > A[0, 0] and A[2, 1] > A[1, 1]: the max-based reference differs
    stream = avalanche_run[-1]["StreamForgetting/eval_phase/test_stream"]
    assert forgetting(A) == pytest.approx(np.mean([0.95 - 0.40, 0.85 - 0.50, 0.75 - 0.70]))
    # exactly the two rises above the just-trained reference, averaged over 3 tasks
    assert forgetting(A) - stream == pytest.approx(((0.95 - 0.90) + (0.85 - 0.80)) / 3, abs=1e-9)
