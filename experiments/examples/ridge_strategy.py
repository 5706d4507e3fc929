"""A feature-based strategy in ~40 lines: a ridge-regression head on frozen features.

Run it from this file, no installation needed::

    cl run --strategy experiments/examples/ridge_strategy.py:RidgeStrategy --set strategy.alpha=0.1

It keeps the sufficient statistics G = X^T X and B = X^T Y (Y one-hot over global
classes) summed over every task seen, and predicts with W = (G + alpha I)^-1 B:
the closed-form ridge solution on all data so far, so it forgets nothing (the
analytic head of RanPAC, McDonnell et al. 2023, without random projection).
"""

from __future__ import annotations

import torch

from cl.core.strategy import Context, Strategy, TaskData
from streams.core import LabelSpace


class RidgeStrategy(Strategy):
    inputs = "features"

    def __init__(self, *, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}.")
        self.alpha = alpha
        self.G: torch.Tensor | None = None  # (D, D)
        self.B: torch.Tensor | None = None  # (D, n_classes)

    def train_task(self, data: TaskData, ctx: Context) -> None:
        X = data.features.double()
        Y = torch.nn.functional.one_hot(data.targets, ctx.stream.n_classes).double()
        if self.G is None:
            self.G, self.B = torch.zeros(X.shape[1], X.shape[1]).double(), torch.zeros_like(X.T @ Y)
        self.G += X.T @ X
        self.B += X.T @ Y
        ctx.count("examples_seen", len(X))

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        if self.G is None:
            return torch.zeros(len(inputs), len(label_space))
        W = torch.linalg.solve(self.G + self.alpha * torch.eye(len(self.G)).double(), self.B)
        return (inputs.double() @ W)[:, list(label_space.class_ids)].float()

    def state_dict(self) -> dict:
        return {} if self.G is None else {"G": self.G, "B": self.B}

    def load_state_dict(self, state: dict) -> None:
        self.G, self.B = state.get("G"), state.get("B")
