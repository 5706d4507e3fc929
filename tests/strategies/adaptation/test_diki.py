"""DIKI: residual prefix attention and distribution-aware calibration against independent
formulas on toy-clip's real blocks, and the strategy through ``cl run`` on ``toy-mtil``."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from cl.cli import main
from cl.models.backbones import create_backbone
from strategies.adaptation.diki import calibrate, majority, task_statistics
from strategies.adaptation.diki_attention import ResidualPrefixAttention, install, routed


@pytest.fixture(scope="module")
def toy_clip():
    return create_backbone("toy-clip")


def _reference_attention(mha, x, pool, ids, weight, mask=None):
    """softmax(qkᵀ/√d + M)v + w·softmax(q P_kᵀ/√d)P_v, then W_o — written out per head."""
    B, N, D = x.shape
    H = mha.num_heads
    d = D // H
    W, b = mha.in_proj_weight.double(), mha.in_proj_bias.double()
    q, k, v = (x.double() @ W[i * D:(i + 1) * D].T + b[i * D:(i + 1) * D] for i in range(3))
    out = torch.zeros(B, N, D, dtype=torch.float64)
    for n in range(B):
        pk, pv = pool[ids[n], 0].double(), pool[ids[n], 1].double()
        for h in range(H):
            s = slice(h * d, (h + 1) * d)
            logits = q[n, :, s] @ k[n, :, s].T / math.sqrt(d)
            if mask is not None:
                logits = logits + mask.double()
            main = torch.softmax(logits, -1) @ v[n, :, s]
            extra = torch.softmax(q[n, :, s] @ pk[:, s].T / math.sqrt(d), -1) @ pv[:, s]
            out[n, :, s] = main + (1.0 if weight is None else weight[n]) * extra
    return out @ mha.out_proj.weight.double().T + mha.out_proj.bias.double()


def test_residual_prefix_attention_is_the_papers_formula(toy_clip):
    mha = copy.deepcopy(toy_clip.model.visual.transformer.resblocks[0].attn)
    g = torch.Generator().manual_seed(0)
    wrapped = ResidualPrefixAttention(mha, pool_size=3, prefix_len=4, generator=g)
    with torch.no_grad():
        wrapped.prefix_pool[:, 1].normal_(generator=g)  # non-zero values
    x = torch.randn(2, 5, mha.embed_dim, generator=g)
    ids, weight = torch.tensor([2, 0]), torch.tensor([0.3, 0.9])
    with torch.no_grad(), routed([wrapped], ids, weight):
        ours = wrapped(x, x, x)[0]
    expected = _reference_attention(mha, x, wrapped.prefix_pool.detach(), ids, weight)
    np.testing.assert_allclose(ours.double().numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    # with the text tower's causal mask, one prefix for all samples, no weight
    mask = toy_clip.model.attn_mask[:5, :5]
    with torch.no_grad(), routed([wrapped], torch.tensor(1), None):
        masked = wrapped(x, x, x, attn_mask=mask)[0]
    expected = _reference_attention(mha, x, wrapped.prefix_pool.detach(), [1, 1], None, mask)
    np.testing.assert_allclose(masked.double().numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_without_route_or_with_fresh_prefixes_the_model_is_the_pretrained_one(toy_clip):
    model = copy.deepcopy(toy_clip.model)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    tokens = toy_clip.tokenizer(["a photo of a red circle.", "two squares"])
    with torch.no_grad():
        before = model.encode_image(images), model.encode_text(tokens)
        vision = install(model, "vision", 2, pool_size=4, prefix_len=3)
        text = install(model, "text", 2, pool_size=4, prefix_len=3)
        plain = model.encode_image(images), model.encode_text(tokens)
        with routed(vision + text, torch.tensor(2), None):  # values start at zero
            fresh = model.encode_image(images), model.encode_text(tokens)
    assert all(torch.equal(a, b) for a, b in zip(before, plain, strict=True))
    for a, b in zip(before, fresh, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    pool = vision[0].prefix_pool.detach()
    assert pool[:, 0].abs().max() <= 1 and pool[:, 0].std() > 0.3 and not pool[:, 1].any()
    with pytest.raises(ValueError, match="already installed"):
        install(model, "vision", 1, pool_size=4, prefix_len=3)
    with pytest.raises(ValueError, match="depth must be in"):
        install(copy.deepcopy(toy_clip.model), "text", 99, pool_size=4, prefix_len=3)


def _log_normal(x, mean, cov):
    diff = x - mean
    _, logdet = np.linalg.slogdet(cov)
    maha = np.einsum("bi,ij,bj->b", diff, np.linalg.inv(cov), diff)
    return -0.5 * (len(mean) * np.log(2 * np.pi) + logdet + maha)


def test_task_statistics_and_calibration_are_gaussian_likelihoods():
    g = torch.Generator().manual_seed(2)
    tasks = [torch.nn.functional.normalize(torch.randn(40, 6, generator=g) + 3 * i, dim=-1)
             for i in range(3)]
    stats = [task_statistics(t, 1e-7) for t in tasks]
    for t, (mean, cov) in zip(tasks, stats, strict=True):
        np.testing.assert_allclose(mean.numpy(), t.numpy().mean(0), rtol=0, atol=1e-6)
        np.testing.assert_allclose(cov.numpy(), np.cov(t.numpy().T, ddof=1) + 1e-7 * np.eye(6),
                                   rtol=1e-5, atol=1e-7)
    x = torch.cat([tasks[2][:3], tasks[0][:2]])
    ids, w = calibrate(x, torch.stack([m for m, _ in stats]), torch.stack([c for _, c in stats]),
                       512.0)
    logp = np.stack([_log_normal(x.double().numpy(), m.double().numpy(), c.double().numpy())
                     for m, c in stats], 1)
    np.testing.assert_array_equal(ids.numpy(), logp.argmax(1))
    np.testing.assert_allclose(w.numpy(), 1 / (1 + np.exp(-(logp.max(1) / 512 - 1))), rtol=1e-4)
    assert majority(ids).item() == 2
    with pytest.raises(ValueError, match="at least two"):
        task_statistics(torch.zeros(1, 6), 1e-7)


def test_cli_runs_diki_on_toy_mtil_and_only_the_trained_slot_moves(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--stream", "toy-mtil", "--backbone", "toy-clip", "--strategy", "diki",
            "--no-progress", "--out", str(out), "--set", "stream.domains=['counts','colours']",
            "--set", "stream.n_train=4", "--set", "stream.n_test=4",
            "--set", "strategy.iterations=2", "--set", "strategy.batch_size=8",
            "--set", "strategy.depth_vision=1", "--set", "strategy.depth_text=1"]
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text())["completed_tasks"] == 2
    state = torch.load(out / "checkpoints" / "task-0000.pt", weights_only=False)["strategy"]
    pools = state["prefixes"]
    assert set(pools) == {"visual.transformer.resblocks.0.attn.prefix_pool",
                          "transformer.resblocks.0.attn.prefix_pool"}
    for pool in pools.values():
        assert pool.shape[:2] == (2, 2)
        assert pool[0, 1].abs().sum() > 0 and not pool[1, 1].any()  # task 0 trained, 1 not
    assert state["means"].shape[0] == 1 and state["covariances"].shape[0] == 1


def test_state_dict_restores_prefixes_and_gaussians_exactly(toy_clip, tmp_path):
    import streams
    from cl.core.runner import Runner
    from strategies.adaptation.diki import DIKI

    stream = streams.get("toy-mtil", domains=["counts", "colours"], n_train=6, n_test=4, seed=0)
    options = {"iterations": 2, "batch_size": 8, "depth_vision": 1, "depth_text": 1,
               "calibration_scale": 64.0}
    trained = DIKI(**options)
    backbone = copy.deepcopy(toy_clip)
    Runner(stream, trained, backbone, out_dir=tmp_path / "run", seed=0, progress=False).run()
    restored = DIKI(**options)
    restored.load_state_dict(trained.state_dict())
    fresh = copy.deepcopy(toy_clip)
    restored.attach(fresh)
    images = torch.stack([toy_clip.preprocess(stream[1].load_test()[i][0]) for i in range(4)])
    space = stream.eval_label_space(1, 1)
    with torch.no_grad():
        a = trained._logits(backbone.model, images, space)
        b = restored._logits(fresh.model, images, space)
    assert torch.equal(a, b)
    untrained = DIKI(**options)
    plain = untrained.attach(copy.deepcopy(toy_clip))
    with torch.no_grad():
        assert not torch.equal(a, untrained._logits(plain.model, images, space))


def test_reset_puts_the_pretrained_attention_back(toy_clip):
    from strategies.adaptation.diki import DIKI

    strategy = DIKI(depth_vision=1, depth_text=1)
    backbone = strategy.attach(copy.deepcopy(toy_clip))
    original = backbone.model.visual.transformer.resblocks[0].attn
    install(backbone.model, "vision", 1, pool_size=2, prefix_len=2)
    strategy.load_state_dict({})
    assert backbone.model.visual.transformer.resblocks[0].attn is original
