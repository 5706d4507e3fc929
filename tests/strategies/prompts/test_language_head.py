"""``head="language"`` on l2p, dualprompt and coda-prompt (LingoCL, issue 25) on toy-cil with
toy-clip: the class-name targets are the text tower's, bit-identical after training; only the
prompts, keys and the head's projection train; the old-class logits stay masked; offline."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

import strategies
from cl.cli import main
from cl.core.runner import Runner

FAST = {"epochs": 0, "iterations": 2, "batch_size": 8}
NAMES = ("l2p", "dualprompt", "coda-prompt")


def _clip_targets(stream, backbone):
    """t_c = text(P(name_c)) / ‖·‖ for every class id, written out independently."""
    space = stream.task_label_space(range(len(stream)))
    names = dict(zip(space.class_ids, space.class_names, strict=True))
    with torch.no_grad():
        text = backbone.encode_texts([f"a photo of a {names[c]}." for c in range(stream.n_classes)])
    return text.float() / text.float().norm(dim=-1, keepdim=True)


def _images(stream, backbone, n=4):
    test = stream[0].load_test()
    return torch.stack([backbone.preprocess(test[i][0]) for i in range(n)])


@pytest.mark.parametrize("name", NAMES)
def test_targets_are_frozen_and_only_prompts_and_projection_train(name, stream, pristine,
                                                                  tmp_path):
    backbone = copy.deepcopy(pristine)
    weights = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    strategy = strategies.get(name, **FAST, head="language", head_temperature=0.05)
    runner = Runner(stream, strategy, backbone, out_dir=tmp_path, progress=False)
    for t in (0, 1):
        ctx = runner.context(t)
        strategy.before_task(ctx)
        if t == 0:
            targets = strategy.head.targets.clone()
            projection = strategy.head.projection.weight.detach().clone()
            assert torch.allclose(targets, _clip_targets(stream, pristine), atol=1e-6)
            assert targets.shape[0] == stream.n_classes  # later tasks' classes from the start
        strategy.train_task(runner.task_data(t), ctx)
        strategy.after_task(ctx)
    assert torch.equal(strategy.head.targets, targets)  # bit-identical after two tasks
    assert not torch.equal(strategy.head.projection.weight, projection)
    assert strategy.head.temperature == 0.05
    assert all(torch.equal(weights[k], v) for k, v in backbone.model.state_dict().items())
    params = dict(strategy._modules.named_parameters())
    assert {"head.projection.weight", "head.projection.bias"} <= set(params)
    assert not any("targets" in n for n in params)
    assert 0 < strategy.trainable_parameters() < 0.05 * sum(
        p.numel() for p in backbone.model.parameters())

    restored = strategies.get(name, **FAST, head="language", head_temperature=0.05)
    restored.load_state_dict(copy.deepcopy(strategy.state_dict()))
    again = Runner(stream, restored, copy.deepcopy(pristine), out_dir=tmp_path / "b",
                   progress=False)
    space, images = stream.task_label_space([0, 1]), _images(stream, pristine)
    assert torch.equal(restored.predict(images, space, again.context(1)),
                       strategy.predict(images, space, runner.context(1)))


def test_training_loss_masks_the_classes_outside_the_task(stream, pristine, tmp_path):
    """Cross-entropy of the language head's logits over the task's own classes only (the
    references' ``train_mask``), minus λ · pull — against the strategy's loss."""
    strategy = strategies.get("l2p", **FAST, head="language")
    runner = Runner(stream, strategy, copy.deepcopy(pristine), out_dir=tmp_path, progress=False)
    ctx = runner.context(1)
    strategy.before_task(ctx)
    images = _images(stream, pristine)
    mine = list(stream.task_label_space([1]).class_ids)
    labels = torch.tensor([mine[0], mine[1], mine[1], mine[0]])
    model = runner.backbone.model
    with torch.no_grad():
        loss = strategy.loss(model, images, labels, ctx)
        features, extra = strategy.prompted(model, images, strategy.query(model, images),
                                            task=1, train=True)
        z = F.normalize(strategy.head.projection(features), dim=-1)
        cosines = z @ strategy.head.targets.T / 0.1
        expected = F.cross_entropy(cosines[:, mine],
                                   torch.tensor([mine.index(int(y)) for y in labels])) + extra
    assert torch.allclose(loss, expected, atol=1e-6)


def test_language_options_are_refused_without_the_language_head():
    with pytest.raises(ValueError, match="head_temperature must be .*0.0"):
        strategies.get("l2p", head="language", head_temperature=0.0)
    with pytest.raises(ValueError, match="set strategy.head=language"):
        strategies.get("coda-prompt", head_temperature=0.5)
    with pytest.raises(TypeError, match="'head' must be one of \\['linear', 'text', 'language'\\]"):
        strategies.get("dualprompt", head="mlp")


@pytest.mark.slow
def test_cl_run_with_the_language_head_offline(tmp_path):
    out = tmp_path / "run"
    code = main(["run", "--stream", "toy-cil", "--backbone", "toy-clip", "--strategy", "l2p",
                 "--set", "strategy.head=language", "--set", "strategy.epochs=0",
                 "--set", "strategy.iterations=2", "--set", "strategy.batch_size=4",
                 "--set", "stream.n_train=4", "--set", "stream.n_test=2", "--no-progress",
                 "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "completed" and results["completed_tasks"] == 5
    assert all(c["trainable_parameters"] > 0 for c in results["compute"])
