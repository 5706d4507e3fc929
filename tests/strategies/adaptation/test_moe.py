"""MoE-Adapters' experts and routers: gating against independent formulas, placement on a real
open_clip model (``cl-tiny-vit``), activate-freeze bookkeeping."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.special import softmax

from cl.models.backbones import create_backbone
from strategies.adaptation.moe import (
    MixtureOfAdapters,
    balance_loss,
    cv_squared,
    noisy_top_k_gating,
)
from strategies.adaptation.moe_blocks import (
    MoEBlock,
    attach_experts,
    detach_experts,
    moe_blocks,
    set_route,
)


@pytest.fixture(scope="module")
def base():
    return create_backbone("cl-tiny-vit")


@pytest.fixture()
def model(base):
    return copy.deepcopy(base.model)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randomise_experts(model, seed: int) -> None:
    """Non-zero experts and routers, so the mixture changes the outputs."""
    g = _gen(seed)
    with torch.no_grad():
        for _, block in moe_blocks(model):
            for p in block.moe.parameters():
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def _inputs(base):
    images = torch.randn(3, 3, 32, 32, generator=_gen(1))
    tokens = base.tokenizer(["a photo of a 0.", "a photo of a 7.", "a cat"])
    return images, tokens


# -- gating -----------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 4])
def test_clean_gating_is_a_softmax_over_the_top_k_logits(k):
    x, w, wn = (torch.randn(*s, generator=_gen(i), dtype=torch.float64)
                for i, s in enumerate([(9, 6), (6, 5), (6, 5)]))
    gates, load = noisy_top_k_gating(x, w, wn, top_k=k, noise=None)
    logits = x.numpy() @ w.numpy()
    expected = np.zeros_like(logits)
    for row, values in enumerate(logits):
        top = np.argsort(-values)[:k]
        expected[row, top] = softmax(values[top])
    np.testing.assert_allclose(gates.numpy(), expected, rtol=1e-12, atol=0)
    assert ((gates > 0).sum(1) == k).all()
    np.testing.assert_array_equal(load.numpy(), (expected > 0).sum(0))


def test_noisy_load_is_the_probability_of_staying_in_the_top_k():
    """Shazeer et al. 2017, App. A: P(x, i) = Pr(expert i in the top k when only its own noise is
    redrawn); checked against a Monte-Carlo estimate of that probability."""
    x = torch.randn(4, 6, generator=_gen(2), dtype=torch.float64)
    w = torch.randn(6, 5, generator=_gen(3), dtype=torch.float64)
    wn = 0.5 * torch.randn(6, 5, generator=_gen(4), dtype=torch.float64)
    noise = torch.randn(4, 5, generator=_gen(5), dtype=torch.float64)
    gates, load = noisy_top_k_gating(x, w, wn, top_k=2, noise=noise)
    clean = (x @ w).numpy()
    std = (torch.nn.functional.softplus(x @ wn) + 1e-2).numpy()
    noisy = clean + noise.numpy() * std
    rng = np.random.default_rng(0)
    prob = np.zeros_like(clean)
    for b in range(4):
        for i in range(5):
            redraw = clean[b, i] + rng.standard_normal(40_000) * std[b, i]
            others = np.delete(noisy[b], i)
            kth = np.sort(others)[::-1][1]  # the 2nd largest of the others
            prob[b, i] = np.mean(redraw > kth)
    np.testing.assert_allclose(load.numpy(), prob.sum(0), atol=0.03)
    assert ((gates > 0).sum(1) == 2).all()


def test_balance_loss_is_the_squared_coefficient_of_variation_of_importance_and_load():
    values = torch.tensor([3.0, 1.0, 0.5, 2.5])
    expected = np.var(values.numpy(), ddof=1) / np.mean(values.numpy()) ** 2
    np.testing.assert_allclose(cv_squared(values).item(), expected, rtol=1e-6)
    assert cv_squared(torch.tensor([4.0])).item() == 0.0
    gates = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.6, 0.4]])
    load = torch.tensor([1.0, 2.0, 1.0])
    assert balance_loss(gates, load).item() == pytest.approx(
        cv_squared(gates.sum(0)).item() + cv_squared(load).item())


def test_gating_input_errors():
    x, w = torch.zeros(2, 3), torch.zeros(3, 4)
    with pytest.raises(ValueError, match="top_k"):
        noisy_top_k_gating(x, w, w, top_k=5, noise=None)
    with pytest.raises(ValueError, match="noise"):
        noisy_top_k_gating(x, w, w, top_k=2, noise=torch.zeros(3, 4))


# -- the mixture --------------------------------------------------------------------------------
def test_sparse_mixture_equals_the_dense_weighted_sum_of_all_experts():
    torch.manual_seed(0)
    moe = MixtureOfAdapters(16, experts=6, top_k=2, bottleneck=8, dropout=0.0, scale=0.1)
    moe.add_router()
    with torch.no_grad():
        for p in moe.parameters():
            p.copy_(torch.randn(p.shape, generator=_gen(7)))
    moe.eval()
    x = torch.randn(5, 4, 16, generator=_gen(8))
    gates, _ = moe.route(x[:, 0], 0)
    dense = sum(gates[:, i, None, None] * expert(x) for i, expert in enumerate(moe.experts))
    torch.testing.assert_close(moe(x, 0), dense, rtol=0, atol=1e-6)


def test_training_forward_counts_activations_and_freezes_the_two_most_chosen():
    moe = MixtureOfAdapters(8, experts=5, top_k=2, bottleneck=4, dropout=0.0, scale=0.1)
    moe.add_router()
    with torch.no_grad():
        moe.gates[0].copy_(torch.randn(8, 5, generator=_gen(9)))
    moe.train()
    moe.generator = _gen(10)
    x = torch.randn(20, 3, 8, generator=_gen(11))
    moe(x, 0)
    replay = _gen(10)  # the same noise, drawn again
    noise = torch.randn(20, 5, generator=replay)
    gates, load = noisy_top_k_gating(x[:, 0], moe.gates[0], moe.noise[0], top_k=2, noise=noise)
    counts = (gates > 0).sum(0).float()
    torch.testing.assert_close(moe.activations, counts)
    assert moe.last_balance_loss.item() == pytest.approx(balance_loss(gates, load).item())
    chosen = moe.freeze_most_activated(2)
    assert sorted(counts[chosen].tolist()) == sorted(counts.tolist())[-2:]  # the two largest counts
    frozen = set(torch.nonzero(moe.frozen).flatten().tolist())
    assert frozen == set(chosen)
    trainable = {id(p) for p in moe.trainable_parameters()}
    for i, expert in enumerate(moe.experts):
        assert all((id(p) in trainable) == (i not in frozen) == p.requires_grad
                   for p in expert.parameters())
    # the next task: a fresh zero router, earlier ones frozen, frozen experts stay frozen
    moe.reset_activations()
    assert moe.add_router() == 1 and not moe.gates[0].requires_grad
    assert torch.count_nonzero(moe.gates[1]) == 0 and moe.activations.sum() == 0
    moe(x, 1)
    moe.freeze_most_activated(2)
    assert frozen <= set(torch.nonzero(moe.frozen).flatten().tolist())
    assert {id(p) for p in moe.trainable_parameters()} >= {id(moe.gates[1]), id(moe.noise[1])}


def test_evaluation_forward_is_deterministic_and_counts_nothing():
    moe = MixtureOfAdapters(8, experts=4, top_k=2, bottleneck=4, dropout=0.1, scale=0.1)
    moe.add_router()
    moe.eval()
    x = torch.randn(3, 2, 8, generator=_gen(12))
    assert torch.equal(moe(x, 0), moe(x, 0)) and moe.activations.sum() == 0
    with pytest.raises(ValueError, match="router 1"):
        moe(x, 1)
    with pytest.raises(ValueError, match="top_k"):
        MixtureOfAdapters(8, experts=2, top_k=3, bottleneck=4, dropout=0.0, scale=0.1)


# -- on open_clip -----------------------------------------------------------------------------
def test_fresh_experts_and_the_zero_shot_route_leave_open_clip_unchanged(base, model):
    images, tokens = _inputs(base)
    state = torch.random.get_rng_state()
    names = attach_experts(model, "both", experts=4, top_k=2, bottleneck=8, dropout=0.1, scale=0.1,
                           generator=_gen(0))
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert names == [f"{t}.resblocks.{i}" for t in ("visual.transformer", "transformer")
                     for i in range(2)]
    for _, block in moe_blocks(model):
        block.moe.add_router()
    model.eval()
    with torch.no_grad():
        plain = (base.model.encode_image(images), base.model.encode_text(tokens))
        set_route(model, 0)  # fresh experts output zero
        routed = (model.encode_image(images), model.encode_text(tokens))
        _randomise_experts(model, 1)
        set_route(model, None)  # zero-shot: the experts are bypassed
        bypassed = (model.encode_image(images), model.encode_text(tokens))
        set_route(model, 0)
        mixed = (model.encode_image(images), model.encode_text(tokens))
    for a, b, c in zip(plain, routed, bypassed):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert all((a - m).abs().max() > 1e-3 for a, m in zip(plain, mixed))
    detach_experts(model)
    assert not any(isinstance(m, MoEBlock) for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), plain[0])


def test_block_output_is_the_open_clip_block_plus_the_mixture_of_its_attention_output(base, model):
    block = copy.deepcopy(model.visual.transformer.resblocks[1])
    attach_experts(model, "vision", experts=3, top_k=2, bottleneck=8, dropout=0.0, scale=0.1,
                   generator=_gen(0))
    wrapped = model.visual.transformer.resblocks[1]
    wrapped.moe.add_router()
    _randomise_experts(model, 2)
    wrapped.route = 0
    wrapped.eval()
    x = torch.randn(2, 5, 64, generator=_gen(3))
    seen = {}
    hook = block.ln_2.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        out_block = block(x)  # the plain open_clip block; the hook captures x' = x + Attn(LN1 x)
        expected = out_block + wrapped.moe(seen["x"], 0)
        torch.testing.assert_close(wrapped(x), expected, rtol=0, atol=1e-6)
    hook.remove()


def test_training_reaches_the_routers_and_the_chosen_experts(base, model):
    """Fresh experts output 0, so the first step trains only their up-projections (the router's
    gradient is exactly 0, as in the reference); once experts are non-zero, every router weight
    and every parameter of a chosen expert gets gradient."""
    images, tokens = _inputs(base)
    attach_experts(model, "both", experts=4, top_k=2, bottleneck=8, dropout=0.1, scale=0.1,
                   generator=_gen(0))
    layers = [block.moe for _, block in moe_blocks(model)]
    for moe in layers:
        moe.add_router()
    set_route(model, 0)
    model.train()

    def backward():
        model.zero_grad()
        for i, moe in enumerate(layers):
            moe.reset_activations()
            moe.generator = _gen(4 + i)
        ((model.encode_image(images).sum() + model.encode_text(tokens).sum()) ** 2).backward()

    backward()
    for moe in layers:
        assert moe.gates[0].grad.abs().sum() == 0
        for i, expert in enumerate(moe.experts):
            grad = expert.up_proj.weight.grad  # None for experts no sample chose
            assert (grad is not None and grad.abs().sum() > 0) == bool(moe.activations[i] > 0)
    _randomise_experts(model, 6)
    backward()
    for moe in layers:
        assert moe.gates[0].grad.abs().sum() > 0 and moe.noise[0].grad.abs().sum() > 0
        for i, expert in enumerate(moe.experts):
            if moe.activations[i] > 0:
                assert all(p.grad.abs().sum() > 0 for p in expert.parameters())


def test_text_routing_uses_the_start_token_so_all_prompts_share_their_clean_gates(base, model):
    """As the reference, the router reads token 0; with causal attention that is the start-of-text
    token, identical for every prompt, so evaluation gates do not depend on the prompt."""
    _, tokens = _inputs(base)
    attach_experts(model, "text", experts=5, top_k=2, bottleneck=8, dropout=0.0, scale=0.1,
                   generator=_gen(0))
    block = model.transformer.resblocks[1]
    for _, b in moe_blocks(model):
        b.moe.add_router()
    _randomise_experts(model, 5)
    captured = {}
    hook = block.block.ln_2.register_forward_pre_hook(lambda m, a: captured.setdefault("x", a[0]))
    set_route(model, 0)
    model.eval()
    with torch.no_grad():
        model.encode_text(tokens)
        gates, _ = block.moe.route(captured["x"][:, 0], 0)
    hook.remove()
    assert torch.allclose(gates, gates[:1].expand_as(gates), atol=1e-6)


def test_placement_errors(base, model):
    attach_experts(model, "vision", experts=2, top_k=1, bottleneck=4, dropout=0.0, scale=0.1,
                   generator=_gen(0))
    with pytest.raises(ValueError, match="already carries"):
        attach_experts(model, "vision", experts=2, top_k=1, bottleneck=4, dropout=0.0, scale=0.1,
                       generator=_gen(0))
    with pytest.raises(ValueError, match="route 0 does not exist"):
        set_route(model, 0)
    with pytest.raises(ValueError, match="encoders"):
        attach_experts(copy.deepcopy(base.model), "audio", experts=2, top_k=1, bottleneck=4,
                       dropout=0.0, scale=0.1, generator=_gen(0))
    with pytest.raises(TypeError, match="ResidualAttentionBlock"):
        MoEBlock(torch.nn.Linear(2, 2), MixtureOfAdapters(2, experts=2, top_k=1, bottleneck=2,
                                                          dropout=0.0, scale=0.1), batch_first=True)
