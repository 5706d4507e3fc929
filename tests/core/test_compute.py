"""Compute accounting: training FLOPs counted for any strategy that trains (user strategies
with no counting code), feature extraction timed apart from training."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import streams
from cl import Strategy
from cl.core.compute import SampledFlopCounter
from cl.core.runner import Runner
from cl.models.backbones import PixelsBackbone, create_backbone
from cl.runtime.data import loader
from streams.arrays import ArrayImageDataset
from streams.core import Stream, Task


class TowerPrompt(Strategy):
    """A user strategy with no counting code: a learned additive image prompt (an ``nn.Module``)
    trained through the frozen image tower, with a linear head, by SGD."""

    inputs = "images"

    def __init__(self, steps: int = 3, batch_size: int = 8) -> None:
        self.steps, self.batch_size = steps, batch_size
        self.prompt: nn.Module | None = None
        self.head: nn.Linear | None = None

    def _build(self, ctx):
        if self.prompt is None:
            self.prompt = nn.ParameterDict({"delta": nn.Parameter(torch.zeros(3, 32, 32))})
            self.head = nn.Linear(ctx.backbone.model.visual.output_dim, ctx.stream.n_classes)

    def train_task(self, data, ctx):
        model = ctx.backbone.model
        self._build(ctx)
        opt = torch.optim.SGD([*self.prompt.parameters(), *self.head.parameters()], lr=0.1)
        batches = loader(data.dataset, batch_size=self.batch_size, shuffle=True, drop_last=True,
                         generator=ctx.generator)
        for _, (x, y) in zip(range(self.steps), batches, strict=False):
            loss = nn.functional.cross_entropy(self._logits(model, x), torch.as_tensor(y))
            opt.zero_grad()
            loss.backward()
            opt.step()

    def _logits(self, model, x):
        return self.head(model.encode_image(x + self.prompt["delta"], normalize=True))

    def predict(self, inputs, label_space, ctx):
        self._build(ctx)
        with torch.no_grad():
            return self._logits(ctx.backbone.model, inputs)[:, list(label_space.class_ids)]


def _run(tmp_path, strategy, name):
    rng = np.random.default_rng(0)
    images = ArrayImageDataset(rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8),
                               np.arange(48) % 3)
    stream = Stream("noise", (Task("noise", ("red", "green", "blue"), lambda: images,
                                   lambda: images),))
    backbone = create_backbone("toy-clip")
    return Runner(stream, strategy, backbone, out_dir=tmp_path / name, progress=False).run()


def test_a_user_strategy_training_through_the_image_tower_gets_its_flops_counted(tmp_path):
    few, more = (_run(tmp_path, TowerPrompt(steps=n), f"s{n}").results["compute"][0]
                 for n in (2, 5))
    assert few["train_flops"] > 0
    # steps are alike (fixed batch): three more steps cost three times one step
    per_step = (more["train_flops"] - few["train_flops"]) / 3
    assert per_step > 0 and few["train_flops"] == pytest.approx(2 * per_step, rel=1e-6)


def test_sampled_count_equals_the_full_count_when_steps_are_alike():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(8, 16), torch.arange(8) % 4

    def train(steps):
        for _ in range(steps):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    with FlopCounterMode(display=False) as full:
        train(6)
    with SampledFlopCounter(sample_steps=2) as sampled:
        train(6)
    assert sampled.steps == 6 and sampled.total() == full.get_total_flops() > 0
    with SampledFlopCounter(sample_steps=2) as short:  # fewer steps than sampled: all counted
        train(1)
    assert short.total() == full.get_total_flops() // 6


class SlowPixels(PixelsBackbone):
    """``pixels`` whose encoding takes 50 ms a batch: extraction time is easy to tell apart."""

    def encode_images(self, batch):
        time.sleep(0.05)
        return super().encode_images(batch)


def test_feature_extraction_time_is_its_own_column_not_training_time(tmp_path):
    import strategies

    stream = streams.get("split-digits", n_tasks=2)
    runner = Runner(stream, strategies.get("nmc"), SlowPixels(), out_dir=tmp_path / "r",
                    progress=False, batch_size=64)
    compute = runner.run().results["compute"]
    for c in compute:  # each task encodes its train split (≥ 6 batches of 64) and its test split
        assert c["extract_seconds"] >= 0.05 * c["backbone_forwards"] / 64
        assert c["train_seconds"] < 0.5 * c["extract_seconds"]  # nmc: a fit on cached features
    assert compute[0]["eval_seconds"] < compute[0]["extract_seconds"]
