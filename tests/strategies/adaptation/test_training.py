"""The public base for strategies that train: a user method is build/loss/logits, and the base
does the loop, what trains, the bookkeeping and exact resume (toy-cil, toy-clip)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import streams
from cl.core.runner import Runner
from cl.models.backbones import create_backbone
from strategies import TrainingStrategy
from strategies.adaptation.options import TrainerOptions

FAST = {"iterations": 3, "batch_size": 8, "lr": 1e-2}


class LinearProbe(TrainingStrategy):
    """A linear head on frozen CLIP embeddings: the whole method in three hooks."""

    def build(self, model, ctx):
        return {"head": nn.Linear(model.visual.output_dim, ctx.stream.n_classes)}

    def loss(self, model, images, targets, ctx):
        return F.cross_entropy(self.head(model.encode_image(images, normalize=True)), targets)

    def logits(self, model, images, label_space):
        return self.head(model.encode_image(images, normalize=True))[:, list(label_space.class_ids)]


class TunedProjection(LinearProbe):
    """Also trains a backbone parameter (the image projection) and keeps a counter."""

    def trainable_modules(self, model, ctx):
        return [self.head, model.visual.proj]

    def begin_task(self, model, ctx):
        self.tasks = getattr(self, "tasks", 0) + 1

    def extra_state(self):
        return {"tasks": self.tasks}

    def load_extra_state(self, state):
        self.tasks = state["tasks"]


@pytest.fixture(scope="module")
def pristine():
    return create_backbone("toy-clip")


@pytest.fixture(scope="module")
def stream():
    return streams.get("toy-cil", n_tasks=2, n_train=16, n_test=8)


def _learn(strategy, runner, tasks):
    for t in tasks:
        ctx = runner.context(t)
        strategy.before_task(ctx)
        strategy.train_task(runner.task_data(t), ctx)
        strategy.after_task(ctx)
    return ctx


def _images(stream, backbone, n=6):
    test = stream[0].load_test()
    return torch.stack([backbone.preprocess(test[i][0]) for i in range(n)])


def test_only_the_built_modules_train_and_the_base_keeps_the_books(stream, pristine, tmp_path):
    backbone = copy.deepcopy(pristine)
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    strategy = LinearProbe(**FAST)
    runner = Runner(stream, strategy, backbone, out_dir=tmp_path / "run", progress=False)
    ctx = _learn(strategy, runner, [0])
    head = strategy.head
    assert strategy.trainable_parameters() == head.weight.numel() + head.bias.numel()
    assert strategy.memory_bytes() == 4 * strategy.trainable_parameters()
    assert ctx.counters["examples_seen"] == 3 * 8 and ctx.counters["train_flops"] > 0
    after = backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in head.parameters()) and not head.training
    space = stream.task_label_space([0])
    images = _images(stream, backbone)
    logits = strategy.predict(images, space, runner.context(0))
    assert logits.shape == (6, len(space))

    restored = LinearProbe(**FAST)
    restored.load_state_dict(copy.deepcopy(strategy.state_dict()))
    fresh = copy.deepcopy(pristine)
    again = Runner(stream, restored, fresh, out_dir=tmp_path / "restored", progress=False)
    assert torch.equal(restored.predict(images, space, again.context(1)), logits)
    assert restored.trainable_parameters() == strategy.trainable_parameters()


def test_trained_backbone_parameters_and_extra_state_are_resumed(stream, pristine, tmp_path):
    backbone = copy.deepcopy(pristine)
    strategy = TunedProjection(**FAST)
    runner = Runner(stream, strategy, backbone, out_dir=tmp_path / "run", progress=False)
    _learn(strategy, runner, [0, 1])
    assert not torch.equal(backbone.model.visual.proj, pristine.model.visual.proj)
    state = strategy.state_dict()
    assert list(state["backbone"]) == ["visual.proj"] and state["extra"] == {"tasks": 2}
    restored = TunedProjection(**FAST)
    restored.load_state_dict(copy.deepcopy(state))
    fresh = copy.deepcopy(pristine)
    again = Runner(stream, restored, fresh, out_dir=tmp_path / "restored", progress=False)
    space = stream.task_label_space([0, 1])
    images = _images(stream, backbone)
    assert torch.equal(restored.predict(images, space, again.context(1)),
                       strategy.predict(images, space, runner.context(1)))
    assert torch.equal(fresh.model.visual.proj, backbone.model.visual.proj)
    assert restored.tasks == 2
    restored.load_state_dict({})
    assert not hasattr(restored, "head") and restored.memory_bytes() == 0


class NoisyProbe(LinearProbe):
    """Initialises its head from ``ctx.generator`` (as the docs advise) and trains through
    dropout (torch's global generator)."""

    def build(self, model, ctx):
        head = nn.Linear(model.visual.output_dim, ctx.stream.n_classes)
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=ctx.generator) * 0.01)
        return {"head": head}

    def loss(self, model, images, targets, ctx):
        features = F.dropout(model.encode_image(images, normalize=True), p=0.5)
        return F.cross_entropy(self.head(features), targets)


def test_resumed_task_draws_what_the_uninterrupted_run_draws(stream, pristine, tmp_path):
    """Building the restored modules at the resumed task must not advance ``ctx.generator``
    (shuffling) or the global RNG (dropout): the resumed task trains exactly as uninterrupted."""
    whole = NoisyProbe(**FAST)
    runner = Runner(stream, whole, copy.deepcopy(pristine), out_dir=tmp_path / "w", progress=False)
    _learn(whole, runner, [0])
    state = copy.deepcopy(whole.state_dict())
    _learn(whole, runner, [1])
    resumed = NoisyProbe(**FAST)
    resumed.load_state_dict(state)
    again = Runner(stream, resumed, copy.deepcopy(pristine), out_dir=tmp_path / "r",
                   progress=False)
    _learn(resumed, again, [1])
    assert torch.equal(resumed.head.weight, whole.head.weight)


def test_optimiser_schedule_and_clipping_follow_the_options():
    s = LinearProbe(optimizer="sgd", momentum=0.5, schedule="constant", warmup=2,
                    clip_grad_norm=1e-3, lr=0.1)
    p = nn.Parameter(torch.ones(3))
    opt = s._optimizer([{"params": [p]}], 0.1)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.5
    p.grad = torch.full((3,), 10.0)
    opt.step()  # clipped to norm 1e-3 before the step
    assert torch.allclose(p, torch.ones(3) - 0.1 * 1e-3 / 3 ** 0.5)
    assert [s._lr_factor(i, 10) for i in range(3)] == [0.5, 1.0, 1.0]
    cosine = LinearProbe()
    assert cosine._lr_factor(0, 10) == 1.0 and cosine._lr_factor(5, 10) == pytest.approx(0.5)
    assert isinstance(LinearProbe(optimizer="adam")._optimizer([{"params": [p]}], 1.0),
                      torch.optim.Adam)
    with pytest.raises(ValueError, match="optimizer must be"):
        TrainerOptions(optimizer="lamb")
    with pytest.raises(ValueError, match="schedule must be"):
        LinearProbe(schedule="step")


def test_a_module_name_the_strategy_uses_is_refused(stream, pristine, tmp_path):
    class Clash(LinearProbe):
        def build(self, model, ctx):
            return {"options": nn.Linear(2, 2)}

    strategy = Clash(**FAST)
    runner = Runner(stream, strategy, copy.deepcopy(pristine), out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="module 'options'"):
        strategy.before_task(runner.context(0))
