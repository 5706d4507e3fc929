"""LoRA placement on a real tiny open_clip model: attention split, gated layer, peft, merging."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from cl.models.backbones import create_backbone
from strategies.lora import TARGETS, ExplicitAttention, GatedLoRALinear, kappa_at, soft_threshold
from strategies.lora.placement import check_targets, prepare, replace_module, restore_attention


@pytest.fixture(scope="module")
def base():
    """The tiny open_clip backbone (random weights, seed 0) shared read-only by the tests."""
    return create_backbone("cl-tiny-vit")


@pytest.fixture()
def model(base):
    return copy.deepcopy(base.model)


def _inputs(base):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, 32, 32, generator=g)
    tokens = base.tokenizer(["a photo of a 0.", "a photo of a 7.", "a cat"])
    return images, tokens


def _encode(model, images, tokens):
    return torch.cat([model.encode_image(images), model.encode_text(tokens)])


# -- attention ------------------------------------------------------------------------------
def test_explicit_attention_reproduces_both_towers_and_folds_back(base, model):
    images, tokens = _inputs(base)
    with torch.no_grad():
        before = _encode(model, images, tokens)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        prepare(model, "both", ["q_proj", "out_proj"])
        assert sum(isinstance(m, ExplicitAttention) for m in model.modules()) == 4
        assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
        split = _encode(model, images, tokens)
        restore_attention(model)
        back = _encode(model, images, tokens)
    torch.testing.assert_close(split, before, atol=1e-5, rtol=0)  # text tower: causal mask
    assert torch.equal(back, before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(type(m) is type(n) for m, n in zip(model.modules(), base.model.modules()))


@pytest.mark.parametrize("batch_first", [True, False])
def test_explicit_attention_matches_multihead_with_masks(batch_first):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first).eval()
    explicit = ExplicitAttention.from_multihead(mha)
    x = torch.randn(2, 5, 16) if batch_first else torch.randn(5, 2, 16)
    bool_mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    per_head = torch.randn(2 * 4, 5, 5)
    padding = torch.tensor([[False] * 4 + [True], [False] * 5])
    for kwargs in ({}, {"attn_mask": bool_mask}, {"attn_mask": per_head},
                   {"key_padding_mask": padding}):
        with torch.no_grad():
            want = mha(x, x, x, need_weights=False, **kwargs)[0]
            got = explicit(x, x, x, need_weights=False, **kwargs)[0]
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="need_weights=False"):
        explicit(x, x, x, need_weights=True)


# -- thresholding ----------------------------------------------------------------------------
def test_soft_threshold_matches_hand_values():
    x = torch.tensor([-1.0, -0.3, -0.1, 0.0, 0.05, 0.15, 0.25, 2.0])
    # paper: T_κ(x) = sign(x)·max(|x| − κ, 0) with κ = 0.1
    paper = torch.tensor([-0.9, -0.2, 0.0, 0.0, 0.0, 0.05, 0.15, 1.9])
    torch.testing.assert_close(soft_threshold(x, 0.1), paper)
    # code: shift what exceeds κ, then zero what is below κ → |x| < 2κ vanishes, except
    # |x| = κ exactly, which is neither shifted nor below κ (−0.1 stays −0.1)
    code = torch.tensor([-0.9, -0.2, -0.1, 0.0, 0.0, 0.0, 0.15, 1.9])
    torch.testing.assert_close(soft_threshold(x, 0.1, "code"), code)
    assert torch.equal(soft_threshold(x, 0.0), x)
    with pytest.raises(ValueError, match="kappa"):
        soft_threshold(x, -1.0)


@pytest.mark.parametrize("kappa", [0.005, 0.1, 0.25])
def test_code_threshold_rule_is_the_reference_piecewise_map_at_its_boundaries(kappa):
    """The public code keeps |x| = κ (0.005 → 0.005 at κ = 0.005); checked against the rule
    written piecewise in numpy, at and around κ and 2κ, in the gate's own dtype."""
    k32 = float(np.float32(kappa))
    grid = np.array([0.0, 0.5, 0.999, 1.0, 1.001, 1.5, 1.999, 2.0, 2.001, 3.0]) * k32
    x = np.concatenate([grid, -grid]).astype(np.float32)
    a = np.abs(x)
    expected = np.where(a < k32, 0.0,
                        np.where(a == k32, x,
                                 np.where(a < 2 * k32, 0.0, np.sign(x) * (a - k32))))
    got = soft_threshold(torch.from_numpy(x), kappa, "code").numpy()
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=0, atol=1e-7)
    assert soft_threshold(torch.tensor([kappa]), kappa, "code").item() == pytest.approx(kappa)
    assert soft_threshold(torch.tensor([kappa]), kappa, "paper").item() == 0.0


def test_kappa_schedule_follows_reference_grid():
    # 500 iterations, max 0.005, 50 grid points: dense through 250, +1 grid point every 5 steps
    grid = [0.005 * k / 49 for k in range(50)]
    assert kappa_at(0, 500, 0.005) == 0.0
    assert kappa_at(250, 500, 0.005) == 0.0
    assert kappa_at(251, 500, 0.005) == pytest.approx(grid[1])
    assert kappa_at(254, 500, 0.005) == pytest.approx(grid[1])
    assert kappa_at(255, 500, 0.005) == pytest.approx(grid[2])
    assert kappa_at(300, 500, 0.005) == pytest.approx(grid[11])
    assert kappa_at(499, 500, 0.005) == pytest.approx(0.005)
    # short run (grid 0, 1/3, 2/3, 1): one grid step per iteration from iteration 3 (>= dense),
    # thresholding from iteration 4 (> dense), instead of the reference's never thresholding
    got = [kappa_at(i, 6, 1.0, steps=4) for i in range(6)]
    assert got == pytest.approx([0.0, 0.0, 0.0, 0.0, 2 / 3, 1.0])


def test_kappa_values_are_the_reference_linspace_grid_to_the_bit():
    # the reference thresholds with np.linspace(0, max_kappa, steps)[k]; k·max/(steps−1) computed
    # in another order differs from it in the last bit for some k (e.g. max 7e-4, 50 steps)
    for max_kappa, steps, total in ((0.005, 50, 500), (7e-4, 50, 1000), (0.01, 7, 333)):
        grid = np.linspace(0, max_kappa, steps)
        got = {kappa_at(i, total, max_kappa, steps=steps) for i in range(total)}
        assert got <= {float(v) for v in grid}
        assert len(got) == steps


# -- adapters change outputs and get gradients -------------------------------------------------------
def _gated(model, rank=3):
    names = prepare(model, "both", TARGETS)
    g = torch.Generator().manual_seed(0)
    for name in names:
        replace_module(model, name, GatedLoRALinear(model.get_submodule(name), rank, generator=g))
    return names, {n: model.get_submodule(n) for n in names}


def _peft(model, rank=3):
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    names = prepare(model, "both", TARGETS)
    tuner = LoraModel(model, LoraConfig(r=rank, lora_alpha=rank, target_modules=names), "default")
    return names, {n: model.get_submodule(n) for n in names}, tuner


def _b_params(module):
    return [module.lora_B] if isinstance(module, GatedLoRALinear) else [module.lora_B["default"].weight]


@pytest.mark.parametrize("kind", ["gated", "peft"])
def test_every_target_changes_output_and_gets_gradient(base, model, kind):
    images, tokens = _inputs(base)
    names, modules = _gated(model) if kind == "gated" else _peft(model)[:2]
    assert len(names) == 2 * 2 * len(TARGETS)  # 2 towers x 2 blocks x 6 linears
    with torch.no_grad():
        reference = _encode(base.model, images, tokens)
        torch.testing.assert_close(_encode(model, images, tokens), reference, atol=1e-5, rtol=0)
    for name, module in modules.items():  # one non-zero B at a time
        (b,) = _b_params(module)
        with torch.no_grad():
            b.normal_(0, 0.5)
            changed = _encode(model, images, tokens)
            b.zero_()
        assert (changed - reference).abs().max() > 1e-4, f"LoRA on {name} has no effect"
    with torch.no_grad():
        for module in modules.values():
            _b_params(module)[0].normal_(0, 0.1)
    loss = _encode(model, images, tokens).pow(2).sum()
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.endswith("gate") for n, _ in trainable)
    per_module = 3 if kind == "gated" else 2
    assert len(trainable) == per_module * len(names)
    for n, p in trainable:
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{n} gets no gradient"


def test_gated_merge_restores_plain_open_clip_with_same_outputs(base, model):
    images, tokens = _inputs(base)
    names, modules = _gated(model)
    with torch.no_grad():
        for module in modules.values():
            module.lora_B.normal_(0, 0.2)
            module.gate[0] = 0.0  # a pruned rank must not enter the merge
        unmerged = _encode(model, images, tokens)
        expected = {n: m.base_layer.weight + m.delta_weight() for n, m in modules.items()}
        for name, module in modules.items():
            replace_module(model, name, module.merged())
        for name in names:
            assert torch.equal(model.get_submodule(name).weight, expected[name])
        restore_attention(model)
        merged = _encode(model, images, tokens)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)
    assert [type(m) for m in model.modules()] == [type(m) for m in base.model.modules()]
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in base.model.parameters())
    assert not any(p.requires_grad for p in model.parameters())


def test_peft_merge_and_unload_restores_plain_open_clip(base, model):
    images, tokens = _inputs(base)
    _, modules, tuner = _peft(model)
    with torch.no_grad():
        for module in modules.values():
            module.lora_B["default"].weight.normal_(0, 0.2)
        unmerged = _encode(model, images, tokens)
        tuner.merge_and_unload(safe_merge=True)
        restore_attention(model)
        merged = _encode(model, images, tokens)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)
    assert [type(m) for m in model.modules()] == [type(m) for m in base.model.modules()]
    assert not hasattr(model, "peft_config")


# -- bad input ---------------------------------------------------------------------------
def test_bad_rank_and_targets(base):
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        GatedLoRALinear(nn.Linear(4, 4), 0)
    with pytest.raises(ValueError, match=r"unknown LoRA target\(s\) \['qkv'\]; valid targets: q_proj"):
        check_targets(["q_proj", "qkv"])
    with pytest.raises(ValueError, match="encoders must be one of"):
        prepare(copy.deepcopy(base.model), "image", ["c_fc"])
