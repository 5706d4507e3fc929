"""FLOP counting of attention: a ViT's forward costs what its layers' arithmetic says, whether
autograd is on (the training path) or off (extraction, where ``nn.MultiheadAttention`` takes its
fused fast path), and torch's counter alone would miss it."""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from cl.core.compute import flops_per_image
from cl.core.flops import flop_counter, native_mha_flops
from cl.models.backbones import create_backbone


def vit_forward_flops(*, image: int, patch: int, width: int, layers: int, mlp: int,
                      output_dim: int) -> int:
    """A CLIP ViT image tower's FLOPs by its layers (2 FLOPs per multiply-add): patch embedding,
    per block QKV (3·w²), scores and weighted values (2·L·w), output projection (w²) and the MLP
    (2·w·mlp) per token, then the pooled token's projection."""
    patches = (image // patch) ** 2
    tokens = patches + 1  # the class token
    embed = 2 * patches * (3 * patch * patch) * width
    block = 2 * tokens * (3 * width * width + width * width + 2 * width * mlp) \
        + 2 * 2 * tokens * tokens * width
    return embed + layers * block + 2 * width * output_dim


def test_tiny_vit_forward_matches_layer_arithmetic_with_and_without_grad() -> None:
    backbone = create_backbone("cl-tiny-vit", device="cpu")
    model = backbone.model.eval()
    x = torch.randn(1, 3, 32, 32)
    expected = vit_forward_flops(image=32, patch=8, width=64, layers=2, mlp=4 * 64,
                                 output_dim=32)

    with torch.inference_mode(), flop_counter() as fast:  # the fused fast path
        model.encode_image(x)
    with flop_counter() as slow:  # autograd on: SDPA path
        model.encode_image(x)
    with torch.inference_mode(), FlopCounterMode(display=False) as torch_only:
        model.encode_image(x)

    assert fast.get_total_flops() == expected
    assert slow.get_total_flops() == expected
    assert flops_per_image(backbone, x[0]) == expected  # what feature strategies are charged
    assert torch_only.get_total_flops() < expected  # the gap cl.core.flops closes


def test_cpu_sdpa_forward_and_backward_are_counted() -> None:
    b, h, n, d = 2, 3, 5, 4
    q = torch.randn(b, h, n, d, requires_grad=True)
    with flop_counter() as forward:
        out = F.scaled_dot_product_attention(q, q, q)
    assert forward.get_total_flops() == 2 * (2 * b * h * n * n * d)
    with flop_counter() as backward:
        out.sum().backward()
    assert backward.get_total_flops() > forward.get_total_flops()  # recompute + four products


def test_native_mha_formula_counts_cross_attention_sources() -> None:
    b, length, source, e = 2, 3, 7, 8
    assert native_mha_flops((b, length, e), (b, source, e), (b, source, e), e, 2) == (
        2 * b * length * e * e * 2 + 2 * 2 * b * source * e * e + 2 * 2 * b * length * source * e)


def test_the_flop_probe_changes_nothing_training_will_see() -> None:
    """The runner measures FLOPs per image between a strategy's ``before_task`` and its training:
    the probe must not draw routing noise, count expert activations (MoE-Adapters' activate-
    freeze) or switch modules' modes."""
    from strategies.adaptation.moe_blocks import attach_experts, moe_blocks, set_route

    backbone = create_backbone("cl-tiny-vit", device="cpu")
    model = backbone.model
    attach_experts(model, "both", experts=4, top_k=2, bottleneck=8, dropout=0.1, scale=0.1,
                   generator=torch.Generator().manual_seed(0))
    noise = torch.Generator().manual_seed(1)
    for _, block in moe_blocks(model):
        block.moe.add_router()
        block.moe.generator = noise
    set_route(model, 0)
    model.train()
    model.transformer.eval()  # mixed modes stay as they were
    modes = {name: m.training for name, m in model.named_modules()}
    state = noise.get_state()

    assert flops_per_image(backbone, torch.randn(3, 32, 32)) > 0

    assert {name: m.training for name, m in model.named_modules()} == modes
    assert torch.equal(noise.get_state(), state)
    assert all(int(block.moe.activations.sum()) == 0 for _, block in moe_blocks(model))
