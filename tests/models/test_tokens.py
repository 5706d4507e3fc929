"""Token-level access to open_clip towers: equal to encode_image / encode_text without prompts,
prompts and prefixes (concatenated or residual) change the output and receive gradients, the
attention is the papers' formula term by term, unsupported towers are refused."""

from __future__ import annotations

import math

import open_clip.transformer
import pytest
import torch

from cl.models.backbones import create_backbone
from cl.models.tokens import (
    Prefix,
    depth,
    embed_tokens,
    encode_text,
    forward_with_prompts,
    insert_prompts,
    pool_and_project,
    pool_prompts,
    prefix_attention,
    run_blocks,
)


@pytest.fixture(scope="module", params=["cl-tiny-vit", "toy-clip"])
def model(request):
    return create_backbone(request.param).model.eval()


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_no_prompt_equals_encode_image_exactly(model) -> None:
    x = images()
    with torch.no_grad():
        want = model.encode_image(x)
        got = forward_with_prompts(model.visual, x)
        composed = pool_and_project(model.visual, run_blocks(model.visual,
                                                             embed_tokens(model.visual, x)))
    assert want.dtype == torch.float32
    assert (got - want).abs().max().item() == 0.0
    assert (composed - want).abs().max().item() == 0.0


def test_block_ranges_compose(model) -> None:
    x = images()
    with torch.no_grad():
        tokens = embed_tokens(model.visual, x)
        n = depth(model.visual)
        split = run_blocks(model.visual, run_blocks(model.visual, tokens, 0, 1), 1, n)
        assert torch.equal(split, run_blocks(model.visual, tokens))


def test_zero_length_prefix_equals_encode_image(model) -> None:
    x = images()
    width = model.visual.transformer.width
    empty = Prefix(torch.zeros(0, width), torch.zeros(0, width))
    prefixes = {layer: empty for layer in range(depth(model.visual))}
    with torch.no_grad():
        got = forward_with_prompts(model.visual, x, prefixes=prefixes)
        want = model.encode_image(x)
    assert (got - want).abs().max().item() == 0.0


def test_prefix_attention_without_prefix_is_the_blocks_attention(model) -> None:
    """The re-implemented attention equals nn.MultiheadAttention to float32 rounding."""
    attn = model.visual.transformer.resblocks[-1].attn
    x = torch.randn(2, 17, attn.embed_dim, generator=torch.Generator().manual_seed(2))
    width = attn.embed_dim
    with torch.no_grad():
        want = attn(x, x, x, need_weights=False)[0]
        for prefix in (None, Prefix(torch.zeros(0, width), torch.zeros(0, width))):
            torch.testing.assert_close(prefix_attention(attn, x, prefix), want,
                                       rtol=1e-5, atol=1e-6)


def test_prefix_attention_is_multihead_attention_with_prefix_rows(model) -> None:
    """A prefix equals nn.MultiheadAttention over keys/values whose projection is the prefix."""
    block = model.visual.transformer.resblocks[0]
    attn = block.attn
    d = attn.embed_dim
    x = torch.randn(2, 5, d, generator=torch.Generator().manual_seed(1))
    pk, pv = torch.randn(2, 3, d), torch.randn(2, 3, d)
    got = prefix_attention(attn, x, Prefix(pk, pv))
    # reference: explicit softmax attention per head on the same weights
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q, k, v = (x @ w.T + b).chunk(3, dim=-1)
    k, v = torch.cat([pk, k], 1), torch.cat([pv, v], 1)
    h = attn.num_heads
    split = (lambda t: t.view(2, t.shape[1], h, d // h).transpose(1, 2))
    weights = (split(q) @ split(k).transpose(-1, -2) / (d // h) ** 0.5).softmax(-1)
    want = attn.out_proj((weights @ split(v)).transpose(1, 2).reshape(2, 5, d))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_prompts_and_prefixes_change_the_output_and_get_gradients(model) -> None:
    x = images()
    visual = model.visual
    width = visual.transformer.width
    prompts = torch.randn(4, width, requires_grad=True)
    pk = torch.randn(3, 2, width, requires_grad=True)
    pv = torch.randn(3, 2, width, requires_grad=True)
    plain = model.encode_image(x).detach()
    prompted = forward_with_prompts(visual, x, prompts=prompts, prompt_layer=1,
                                    prefixes={0: Prefix(pk, pv)})
    assert prompted.shape == plain.shape
    assert (prompted - plain).abs().max() > 1e-4
    prompted.square().sum().backward()
    for tensor in (prompts, pk, pv):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    assert all(p.grad is None for p in visual.parameters())


def test_prompt_pooling_and_token_layout(model) -> None:
    visual = model.visual
    x = images(2)
    with torch.no_grad():
        tokens = embed_tokens(visual, x)
        prompts = torch.randn(2, 5, visual.transformer.width)
        prompted = insert_prompts(tokens, prompts)
        assert prompted.shape[1] == tokens.shape[1] + 5
        assert torch.equal(prompted[:, 0], tokens[:, 0])
        assert torch.equal(prompted[:, 1:6], prompts)
        out = run_blocks(visual, prompted)
        mean = visual.ln_post(out[:, 1:6]).mean(1) @ visual.proj
        torch.testing.assert_close(pool_prompts(visual, out, 5), mean)
        torch.testing.assert_close(
            forward_with_prompts(visual, x, prompts=prompts, pool="prompts"), mean)


def test_bad_input_is_refused_with_a_clear_error(model) -> None:
    visual = model.visual
    width = visual.transformer.width
    with pytest.raises(ValueError, match="prompt_layer=9"):
        forward_with_prompts(visual, images(1), prompts=torch.zeros(1, width), prompt_layer=9)
    with pytest.raises(ValueError, match="prefix layer 7"):
        forward_with_prompts(visual, images(1),
                             prefixes={7: Prefix(torch.zeros(1, width), torch.zeros(1, width))})
    with pytest.raises(ValueError, match="tower's width"):
        insert_prompts(embed_tokens(visual, images(1)), torch.zeros(2, width + 1))


def test_unsupported_towers_are_refused() -> None:
    from open_clip.modified_resnet import ModifiedResNet

    resnet = ModifiedResNet(layers=(1, 1, 1, 1), output_dim=32, heads=2, image_size=64, width=8)
    with pytest.raises(TypeError, match="VisionTransformer"):
        embed_tokens(resnet, torch.zeros(1, 3, 64, 64))
    vit = create_backbone("cl-tiny-vit").model.visual
    custom = open_clip.transformer.VisionTransformer(
        image_size=32, patch_size=8, width=64, layers=1, heads=2, mlp_ratio=2.0, qk_norm=True)
    prefix = Prefix(torch.zeros(1, 64), torch.zeros(1, 64))
    with pytest.raises(TypeError, match="prefix-tuning needs nn.MultiheadAttention"):
        run_blocks(custom, embed_tokens(custom, torch.zeros(1, 3, 32, 32)), prefixes={0: prefix})
    # prompts alone work on custom blocks
    assert forward_with_prompts(custom, torch.zeros(1, 3, 32, 32),
                                prompts=torch.zeros(2, 64)).shape == (1, 512)
    assert depth(vit) == 2


def _written_out(attn, x, pk, pv, weight, mask, mode):
    """Per sample and head, float64: ``softmax(q kᵀ/√d + M) v + w · softmax(q p_kᵀ/√d) p_v``
    (residual, DIKI eq. 3–5) or ``softmax(q [p_k; k]ᵀ/√d + [0, M]) [p_v; v]`` (concat)."""
    B, N, D = x.shape
    H = attn.num_heads
    d = D // H
    W, b = attn.in_proj_weight.double(), attn.in_proj_bias.double()
    q, k, v = (x.double() @ W[i * D:(i + 1) * D].T + b[i * D:(i + 1) * D] for i in range(3))
    m = torch.zeros(N, N, dtype=torch.float64) if mask is None else mask.double()
    out = torch.zeros(B, N, D, dtype=torch.float64)
    for n in range(B):
        for h in range(H):
            s = slice(h * d, (h + 1) * d)
            pkh, pvh = pk[n, :, s].double(), pv[n, :, s].double()
            if mode == "residual":
                own = torch.softmax(q[n, :, s] @ k[n, :, s].T / math.sqrt(d) + m, -1) @ v[n, :, s]
                extra = torch.softmax(q[n, :, s] @ pkh.T / math.sqrt(d), -1) @ pvh
                out[n, :, s] = own + (1.0 if weight is None else float(weight[n])) * extra
            else:
                logits = q[n, :, s] @ torch.cat([pkh, k[n, :, s]]).T / math.sqrt(d)
                logits = logits + torch.cat([torch.zeros(N, len(pkh), dtype=m.dtype), m], 1)
                out[n, :, s] = torch.softmax(logits, -1) @ torch.cat([pvh, v[n, :, s]])
    return out @ attn.out_proj.weight.double().T + attn.out_proj.bias.double()


@pytest.mark.parametrize("mode", ["residual", "concat"])
def test_prefix_attention_modes_are_the_written_out_formulas(mode) -> None:
    model = create_backbone("toy-clip").model
    g = torch.Generator().manual_seed(0)
    for attn, mask in ((model.visual.transformer.resblocks[0].attn, None),
                       (model.transformer.resblocks[0].attn, model.attn_mask[:5, :5])):
        x = torch.randn(2, 5, attn.embed_dim, generator=g)
        pk, pv = torch.randn(2, 4, attn.embed_dim, generator=g), torch.randn(2, 4, attn.embed_dim,
                                                                              generator=g)
        weight = torch.tensor([0.3, 0.9]) if mode == "residual" else None
        with torch.no_grad():
            got = prefix_attention(attn, x, Prefix(pk, pv), mode=mode, weight=weight,
                                   attn_mask=mask)
        want = _written_out(attn, x, pk, pv, weight, mask, mode)
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="mode='residual'"):
        prefix_attention(attn, x, Prefix(pk, pv), weight=0.5)
    with pytest.raises(ValueError, match="prefix mode 'sum'"):
        prefix_attention(attn, x, Prefix(pk, pv), mode="sum")


def test_text_tower_equals_encode_text_and_zero_residual_values_change_nothing() -> None:
    backbone = create_backbone("toy-clip")
    model = backbone.model.eval()
    text = backbone.tokenizer(["a photo of a red circle.", "two squares", "digit 7"])
    x = images(3, seed=4)
    with torch.no_grad():
        assert torch.equal(encode_text(model, text), model.encode_text(text))
        assert torch.equal(encode_text(model, text, normalize=True),
                           model.encode_text(text, normalize=True))
        d = model.transformer.width
        keys = torch.rand(2, d, generator=torch.Generator().manual_seed(5)) * 2 - 1
        fresh = {0: Prefix(keys, torch.zeros(2, d)), 1: Prefix(keys, torch.zeros(2, d))}
        torch.testing.assert_close(  # a fresh DIKI prefix (values 0) leaves the output as is
            encode_text(model, text, prefixes=fresh, prefix_mode="residual"),
            model.encode_text(text), rtol=0, atol=1e-5)
        moved = {0: Prefix(keys, torch.ones(2, d))}
        assert not torch.allclose(encode_text(model, text, prefixes=moved, prefix_mode="residual"),
                                  model.encode_text(text))
        dv = model.visual.transformer.width
        fresh = {1: Prefix(torch.ones(2, dv), torch.zeros(2, dv))}
        torch.testing.assert_close(
            forward_with_prompts(model.visual, x, prefixes=fresh, prefix_mode="residual",
                                 prefix_weight=torch.tensor([0.2, 0.5, 1.0])),
            model.encode_image(x), rtol=0, atol=1e-5)
        moved = {1: Prefix(torch.ones(2, dv), torch.ones(2, dv))}
        assert not torch.allclose(forward_with_prompts(model.visual, x, prefixes=moved,
                                                       prefix_mode="residual"),
                                  model.encode_image(x))
        scaled = forward_with_prompts(model.visual, x, prefixes=moved, prefix_mode="residual",
                                      prefix_weight=0.0)
        torch.testing.assert_close(scaled, model.encode_image(x), rtol=0, atol=1e-5)
    with pytest.raises(TypeError, match="own text transformer"):
        encode_text(model.visual, text)
