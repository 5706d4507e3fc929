"""CoDyRA and plain LoRA as runner strategies on the tiny open_clip model and split-digits."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import strategies
import streams
from cl.core.runner import Runner
from cl.errors import OptionError
from cl.models.backbones import create_backbone
from strategies import LoRA, RankSelectiveLoRA
from strategies.lora.base import prompts
from strategies.lora.config import CoDyRAOptions, LoraOptions

FAST = {"rank": 4, "iterations": 6, "batch_size": 16, "lr": 5e-3}


@pytest.fixture(scope="module")
def pristine():
    return create_backbone("cl-tiny-vit")


@pytest.fixture()
def backbone(pristine):
    return copy.deepcopy(pristine)


@pytest.fixture(scope="module")
def stream():
    return streams.get("split-digits")


def _runner(stream, backbone, strategy, tmp_path):
    """A runner whose public context/task_data give what the loop would hand the strategy."""
    return Runner(stream, strategy, backbone, out_dir=tmp_path / "run", progress=False)


def _images(stream, backbone, n=8):
    test = stream[0].load_test()
    return torch.stack([backbone.preprocess(test[i][0]) for i in range(n)])


def _clip_logits(backbone, images, label_space):
    with torch.no_grad():
        img = backbone.model.encode_image(images, normalize=True)
        txt = backbone.model.encode_text(backbone.tokenizer(prompts(label_space)), normalize=True)
        return backbone.model.logit_scale.exp() * img @ txt.T


def test_registered_with_validated_options():
    strategy = strategies.get("codyra", rank=8, targets=["q_proj", "c_fc"], encoders="vision")
    assert isinstance(strategy, RankSelectiveLoRA) and strategy.options.targets == ("q_proj", "c_fc")
    assert isinstance(strategies.get("lora"), LoRA)
    assert strategies.get("codyra").options == CoDyRAOptions()
    assert strategies.get("codyra").options.rank == 16
    assert strategies.get("codyra").options.max_kappa == 0.005
    # the dataclass is the option schema: an unknown or mistyped option is named
    with pytest.raises(ValueError, match="no option 'kappa'.*max_kappa"):
        strategies.get("codyra", kappa=0.1)
    with pytest.raises(OptionError, match="'rank' expects an integer"):
        strategies.get("lora", rank="big")
    # options objects are shared between lora and codyra, peft LoraConfig-style
    base = LoraOptions(rank=4, lr=1e-3)
    assert LoRA(base).options == base and LoRA(base, rank=8).options.rank == 8


def test_codyra_selects_ranks_merges_and_records(stream, backbone, pristine, tmp_path):
    images = _images(stream, backbone)
    space = stream.eval_label_space(0, 0)
    strategy = RankSelectiveLoRA(**FAST, max_kappa=0.6, kappa_steps=2)
    runner = _runner(stream, backbone, strategy, tmp_path)
    ctx, records = runner.context(0), runner.tracker.records[0]
    # zero-shot row: plain CLIP logits
    torch.testing.assert_close(strategy.predict(images, space, ctx), _clip_logits(pristine, images, space))
    strategy.before_task(ctx)
    strategy.train_task(runner.task_data(0), ctx)
    gates = strategy.gates()
    assert ctx.counters["examples_seen"] == 6 * 16
    with torch.no_grad():
        unmerged = strategy.predict(images, space, ctx)
    strategy.after_task(ctx)
    ranks = strategy.effective_ranks()
    assert ranks == {name: int((g != 0).sum()) for name, g in gates.items()}
    assert any((g == 0).any() for g in gates.values()), "no gate was thresholded to exactly 0"
    assert sum(ranks.values()) < 4 * len(ranks) == 4 * 24
    assert records["effective_ranks"] == ranks
    assert set(records["update_frobenius_norms"]) == set(ranks)
    assert records["update_frobenius_norm"] > 0
    assert strategy.trainable_parameters() == sum(
        4 * (m.in_features + m.out_features + 1)
        for n, m in pristine.model.named_modules()
        if n.endswith((".c_fc", ".c_proj")))  + 2 * 2 * 4 * 4 * (64 + 64 + 1)
    # merged model: plain open_clip, same size, same outputs as before merging
    assert [type(m) for m in backbone.model.modules()] == [type(m) for m in pristine.model.modules()]
    assert sum(p.numel() for p in backbone.model.parameters()) == sum(
        p.numel() for p in pristine.model.parameters())
    assert not any(p.requires_grad for p in backbone.model.parameters())
    torch.testing.assert_close(strategy.predict(images, space, ctx), unmerged, atol=1e-4, rtol=1e-5)
    assert backbone.fingerprint != pristine.fingerprint
    assert not torch.allclose(strategy.predict(images, space, ctx), _clip_logits(pristine, images, space))


def test_state_dict_restores_merged_model_on_fresh_backbone(stream, backbone, pristine, tmp_path):
    images = _images(stream, backbone)
    space = stream.eval_label_space(1, 1)
    strategy = RankSelectiveLoRA(**FAST, encoders="vision", targets=["v_proj", "out_proj", "c_proj"])
    runner = _runner(stream, backbone, strategy, tmp_path)
    for t in (0, 1):
        ctx = runner.context(t)
        strategy.before_task(ctx)
        strategy.train_task(runner.task_data(t), ctx)
        strategy.after_task(ctx)
    state = strategy.state_dict()
    assert set(state["weights"]) == {f"visual.transformer.resblocks.{i}.{p}" for i in (0, 1)
                                     for p in ("attn.in_proj_weight", "attn.out_proj.weight",
                                               "mlp.c_proj.weight")}
    expected = strategy.predict(images, space, runner.context(1))
    fresh_backbone = copy.deepcopy(pristine)
    restored = RankSelectiveLoRA(**FAST, encoders="vision", targets=["v_proj", "out_proj", "c_proj"])
    restored.load_state_dict(copy.deepcopy(state))
    fresh = _runner(stream, fresh_backbone, restored, tmp_path / "fresh")
    got = restored.predict(images, space, fresh.context(2))
    assert torch.equal(got, expected)
    assert fresh_backbone.fingerprint == backbone.fingerprint
    assert restored.effective_ranks() == strategy.effective_ranks()


def test_plain_lora_trains_through_peft_and_merges(stream, backbone, pristine, tmp_path):
    images = _images(stream, backbone)
    space = stream.eval_label_space(0, 0)
    strategy = LoRA(**FAST, encoders="text", text_to_image=True)
    runner = _runner(stream, backbone, strategy, tmp_path)
    ctx, records = runner.context(0), runner.tracker.records[0]
    strategy.before_task(ctx)
    strategy.train_task(runner.task_data(0), ctx)
    assert strategy.trainable_parameters() == sum(
        p.numel() for n, p in backbone.model.named_parameters() if "lora_" in n)
    unmerged = strategy.predict(images, space, ctx)
    strategy.after_task(ctx)
    assert records["effective_ranks"] == {f"transformer.resblocks.{i}.{p}": 4 for i in (0, 1)
                                          for p in ("attn.q_proj", "attn.k_proj", "attn.v_proj",
                                                    "attn.out_proj", "mlp.c_fc", "mlp.c_proj")}
    assert [type(m) for m in backbone.model.modules()] == [type(m) for m in pristine.model.modules()]
    torch.testing.assert_close(strategy.predict(images, space, ctx), unmerged, atol=1e-4, rtol=1e-5)
    # only the text tower moved
    base = dict(pristine.model.named_parameters())
    changed = {n for n, p in backbone.model.named_parameters() if not torch.equal(p, base[n])}
    assert changed and all(n.startswith("transformer.") for n in changed)


def test_nan_loss_stops_the_task_and_restores_the_model(stream, backbone, pristine, tmp_path):
    strategy = RankSelectiveLoRA(rank=4, iterations=5, batch_size=16, lr=1e30)
    runner = _runner(stream, backbone, strategy, tmp_path)
    ctx = runner.context(0)
    strategy.before_task(ctx)
    with pytest.raises(FloatingPointError, match=r"task 'digits-0-1'.*lr=1e\+30 is too high"):
        strategy.train_task(runner.task_data(0), ctx)
    assert [type(m) for m in backbone.model.modules()] == [type(m) for m in pristine.model.modules()]
    for (n, p), q in zip(backbone.model.state_dict().items(), pristine.model.state_dict().values()):
        assert torch.equal(p, q), n


def test_bad_options_and_backbones(stream, backbone, tmp_path):
    ctx = _runner(stream, backbone, LoRA(), tmp_path).context(0)
    with pytest.raises(ValueError, match="rank must be a positive integer, got 0"):
        RankSelectiveLoRA(rank=0)
    with pytest.raises(ValueError, match="rank must be a positive integer, got -2"):
        LoRA(rank=-2)
    with pytest.raises(ValueError, match=r"unknown LoRA target\(s\) \['fc1'\]; valid targets: "
                                         r"q_proj, k_proj, v_proj, out_proj, c_fc, c_proj"):
        strategies.get("codyra", targets=["fc1"])
    with pytest.raises(TypeError, match="encoders"):
        strategies.get("lora", encoders="image")
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        LoRA(lr=0.0)
    vision_only = copy.deepcopy(backbone)
    vision_only.has_text = False
    with pytest.raises(ValueError, match="has no text tower; use encoders='vision'"):
        RankSelectiveLoRA(encoders="text").before_task(dataclasses.replace(ctx, backbone=vision_only))
    RankSelectiveLoRA(encoders="vision").attach(vision_only)  # the vision tower alone is fine
    with pytest.raises(ValueError, match="adapts an open_clip model, but backbone 'pixels'"):
        LoRA().before_task(dataclasses.replace(ctx, backbone=create_backbone("pixels")))
