"""An image-training strategy in ~60 lines: a small CNN trained on each task in turn.

Run it from this file (add ``--plugin replay`` to replay stored images)::

    cl run --strategy experiments/examples/image_strategy.py:SmallCNN --set strategy.epochs=3

It receives preprocessed image batches (``inputs = "images"``), trains with SGD
on the classes seen so far, and calls ``ctx.before_batch``/``ctx.after_batch``
around every step so that plugins (replay...) apply to it.
"""

from __future__ import annotations

import torch
from torch import nn

from cl.core.strategy import Context, Strategy, TaskData
from cl.runtime.data import loader
from streams.core import LabelSpace


class SmallCNN(Strategy):
    inputs = "images"

    def __init__(self, *, width: int = 16, epochs: int = 3, lr: float = 0.05, batch_size: int = 32) -> None:
        if min(width, epochs, batch_size) <= 0 or lr <= 0:
            raise ValueError("width, epochs, batch_size and lr must be positive.")
        self.width, self.epochs, self.lr, self.batch_size = width, epochs, lr, batch_size
        self.net: nn.Module | None = None

    def _build(self, channels: int, n_classes: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(channels, self.width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Linear(16 * self.width, n_classes),
        )

    def train_task(self, data: TaskData, ctx: Context) -> None:
        batches = loader(data.dataset, batch_size=self.batch_size, shuffle=True, generator=ctx.generator)
        cols = torch.tensor(ctx.label_space.class_ids, device=ctx.device)
        if self.net is not None:
            self.net.train()
        for _ in range(self.epochs):
            for x, y in batches:
                x, y = ctx.before_batch(x.to(ctx.device), y.to(ctx.device))  # plugins may add examples
                if self.net is None:
                    torch.manual_seed(ctx.seed)
                    self.net = self._build(x.shape[1], ctx.stream.n_classes).to(ctx.device)
                    self.opt = torch.optim.SGD(self.net.parameters(), lr=self.lr, momentum=0.9)
                target = torch.searchsorted(cols, y)  # global id -> position in the label space
                loss = nn.functional.cross_entropy(self.net(x)[:, cols], target)
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                ctx.after_batch(loss.detach())
                ctx.count("examples_seen", len(x))
        self.net.eval()

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        if self.net is None:
            return torch.zeros(len(inputs), len(label_space))
        with torch.no_grad():
            return self.net(inputs.to(ctx.device))[:, list(label_space.class_ids)].cpu()

    def trainable_parameters(self) -> int:
        return 0 if self.net is None else sum(p.numel() for p in self.net.parameters())

    def state_dict(self) -> dict:
        return {} if self.net is None else {"net": self.net.state_dict(), "channels": self.net[0].in_channels}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.net = self._build(state["channels"], state["net"]["4.weight"].shape[0])
            self.net.load_state_dict(state["net"])
            self.opt = torch.optim.SGD(self.net.parameters(), lr=self.lr, momentum=0.9)
            self.net.eval()
