"""Image-text losses against independent numpy/scipy formulas, and across two gloo ranks."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from scipy.special import log_softmax, softmax
from torch import nn

from strategies.imagetext.losses import (
    clip_loss,
    modx_distillation_loss,
    momentum_contrast_loss,
    topology_preservation_loss,
)
from strategies.imagetext.momentum import FeatureQueue, compatible_momentum_update


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _features(seed, b=12, d=8):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(b, d, generator=g, dtype=torch.float64)
    return {"img": base + 0.3 * torch.randn(b, d, generator=g, dtype=torch.float64),
            "txt": base + torch.rand(b, 1, generator=g, dtype=torch.float64) * 2
            * torch.randn(b, d, generator=g, dtype=torch.float64),
            "old_img": base + 0.5 * torch.randn(b, d, generator=g, dtype=torch.float64),
            "old_txt": base + 0.5 * torch.randn(b, d, generator=g, dtype=torch.float64)}


def _kl_rows(p_logits, q_logits):
    """KL(softmax(p) || softmax(q)) per row."""
    return (softmax(p_logits, 1) * (log_softmax(p_logits, 1) - log_softmax(q_logits, 1))).sum(1)


def test_clip_loss_is_the_symmetric_cross_entropy():
    f = _features(0)
    i, t = F.normalize(f["img"], dim=1), F.normalize(f["txt"], dim=1)
    logits = 20.0 * i.numpy() @ t.numpy().T
    expected = (-np.diag(log_softmax(logits, 1)).mean() - np.diag(log_softmax(logits.T, 1)).mean()) / 2
    assert clip_loss()(i, t, torch.tensor(20.0)).item() == pytest.approx(expected, rel=1e-12)


def test_modx_distillation_matches_the_formula_and_skips_rows_the_old_model_gets_wrong():
    f = _features(1)
    i, t, oi, ot = (_unit(f[k].numpy()) for k in ("img", "txt", "old_img", "old_txt"))
    old, new = oi @ ot.T, i @ t.T
    trusted_i2t = old.argmax(1) == np.arange(len(old))
    trusted_t2i = old.T.argmax(1) == np.arange(len(old))
    assert 0 < trusted_i2t.sum() < len(old), "the fixture must mix trusted and untrusted rows"
    expected = (_kl_rows(old, new)[trusted_i2t].sum() + _kl_rows(old.T, new.T)[trusted_t2i].sum()) / 2
    got = modx_distillation_loss(f["img"], f["txt"], f["old_img"], f["old_txt"])
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_modx_distillation_is_zero_when_old_equals_new_or_the_old_model_is_always_wrong():
    f = _features(2)
    img = f["img"].clone().requires_grad_()
    same = modx_distillation_loss(img, f["txt"], f["img"], f["txt"])
    same.backward()
    assert same.item() == pytest.approx(0.0, abs=1e-12)
    assert img.grad.abs().max().item() < 1e-12
    # old model whose every top match is the next caption: no row is trusted
    b = 6
    old_img = torch.eye(b, dtype=torch.float64)
    old_txt = torch.roll(torch.eye(b, dtype=torch.float64), 1, dims=0)
    assert modx_distillation_loss(f["img"][:b, :b], f["txt"][:b, :b], old_img, old_txt).item() == 0.0


def test_momentum_contrast_matches_the_formula():
    f = _features(3)
    g = torch.Generator().manual_seed(0)
    qi = F.normalize(torch.randn(16, 8, generator=g, dtype=torch.float64), dim=1)
    qt = F.normalize(torch.randn(16, 8, generator=g, dtype=torch.float64), dim=1)
    i, t, mi, mt = (_unit(f[k].numpy()) for k in ("img", "txt", "old_img", "old_txt"))
    tau = 0.07
    li = log_softmax(i @ np.vstack([mt, qt.numpy()]).T / tau, 1)
    lt = log_softmax(t @ np.vstack([mi, qi.numpy()]).T / tau, 1)
    expected = (-np.diag(li[:, :12]).mean() - np.diag(lt[:, :12]).mean()) / 2
    got = momentum_contrast_loss(f["img"], f["txt"], f["old_img"], f["old_txt"], qi, qt,
                                 temperature=tau)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_topology_preservation_matches_the_formula():
    f = _features(4)
    i, t, ri, rt = (_unit(f[k].numpy()) for k in ("img", "txt", "old_img", "old_txt"))
    tau, b = 0.07, len(i)

    def masked(m):
        m = m.copy()
        m[np.arange(b), np.arange(b)] = -1000.0
        return m

    def kl(new, ref):
        return _kl_rows(ref / tau, new / tau).mean()

    expected = (kl(i @ t.T, ri @ rt.T) + kl(t @ i.T, rt @ ri.T)) / 2 \
        + (kl(masked(i @ i.T), masked(ri @ ri.T)) + kl(masked(t @ t.T), masked(rt @ rt.T))) / 2
    got = topology_preservation_loss(f["img"], f["txt"], f["old_img"], f["old_txt"], temperature=tau)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    same = topology_preservation_loss(f["img"], f["txt"], f["img"], f["txt"])
    assert same.item() == pytest.approx(0.0, abs=1e-12)


def test_losses_reject_mismatched_shapes_and_bad_options():
    f = _features(5)
    with pytest.raises(ValueError, match="must both be"):
        modx_distillation_loss(f["img"], f["txt"][:3], f["old_img"], f["old_txt"])
    with pytest.raises(ValueError, match="same shape"):
        topology_preservation_loss(f["img"], f["txt"], f["old_img"][:3], f["old_txt"][:3])
    with pytest.raises(ValueError, match="temperature"):
        momentum_contrast_loss(f["img"], f["txt"], f["img"], f["txt"], f["img"], f["txt"],
                               temperature=0.0)
    with pytest.raises(ValueError, match="rank"):
        clip_loss(rank=2, world_size=2)


def test_compatible_momentum_update_formulas():
    torch.manual_seed(0)
    mom, cur, ref = nn.Linear(3, 2), nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in mom.parameters()]
    compatible_momentum_update(mom, cur, ref, momentum=0.9)
    for b, c, r, m in zip(before, cur.parameters(), ref.parameters(), mom.parameters()):
        assert torch.allclose(m, 0.9 * b + 0.05 * c + 0.05 * r, atol=1e-7)
    before = [p.detach().clone() for p in mom.parameters()]
    compatible_momentum_update(mom, cur, momentum=0.995)
    for b, c, m in zip(before, cur.parameters(), mom.parameters()):
        assert torch.allclose(m, 0.995 * b + 0.005 * c, atol=1e-7)
    with pytest.raises(ValueError, match="same parameters"):
        compatible_momentum_update(mom, nn.Linear(3, 3), momentum=0.9)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        compatible_momentum_update(mom, cur, momentum=1.5)


def test_feature_queue_is_fifo_and_restores_from_state():
    q = FeatureQueue(8, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(q.image.norm(dim=1), torch.ones(8))
    batches = [torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)]
    for x in batches:
        q.enqueue(x, 2 * x)
    assert q.pointer == 4
    assert torch.allclose(q.image[:4], F.normalize(batches[2], dim=1))   # oldest overwritten
    assert torch.allclose(q.image[4:], F.normalize(batches[1], dim=1))
    assert torch.allclose(q.text, q.image)                               # 2x normalises equally
    copy = FeatureQueue(8, 3)
    copy.load_state_dict(q.state_dict())
    assert copy.pointer == 4 and torch.equal(copy.image, q.image)
    with pytest.raises(ValueError, match="must divide the queue size"):
        q.enqueue(torch.randn(3, 3), torch.randn(3, 3))


# -- two ranks ---------------------------------------------------------------------------

def _queue():
    g = torch.Generator().manual_seed(5)
    return tuple(F.normalize(torch.randn(32, 8, generator=g, dtype=torch.float64), dim=1)
                 for _ in range(2))


def _rank_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    f = _features(6, b=8 * world)
    rows = slice(rank * 8, (rank + 1) * 8)
    local = {k: v[rows].clone().requires_grad_(k in ("img", "txt")) for k, v in f.items()}
    losses = {
        "modx": modx_distillation_loss(local["img"], local["txt"], local["old_img"], local["old_txt"],
                                       rank=rank, world_size=world),
        "topology": topology_preservation_loss(local["img"], local["txt"], local["old_img"],
                                               local["old_txt"], rank=rank, world_size=world),
        "clip": clip_loss(rank=rank, world_size=world)(F.normalize(local["img"], dim=1),
                                                       F.normalize(local["txt"], dim=1),
                                                       torch.tensor(10.0, dtype=torch.float64)),
        "momentum": momentum_contrast_loss(local["img"], local["txt"], local["old_img"],
                                           local["old_txt"], *_queue(), rank=rank, world_size=world),
    }
    result = {}
    for name, loss in losses.items():
        gi, gt = torch.autograd.grad(loss, (local["img"], local["txt"]))
        value = loss.detach().clone()
        torch.distributed.all_reduce(value)
        result[name] = (value.item() / world, (gi / world).numpy(), (gt / world).numpy())
    out[rank] = result
    torch.distributed.destroy_process_group()


def test_two_gloo_ranks_give_the_global_batch_loss_and_gradient():
    """Averaged over ranks (as DDP averages gradients), the per-rank losses give the value
    and the feature gradients of the same loss on the global batch in one process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.start_processes(_rank_worker, args=(2, port, out), nprocs=2, join=True, start_method="fork")
    f = _features(6, b=16)
    full = {k: v.clone().requires_grad_(k in ("img", "txt")) for k, v in f.items()}
    single = {
        "modx": modx_distillation_loss(full["img"], full["txt"], full["old_img"], full["old_txt"]),
        "topology": topology_preservation_loss(full["img"], full["txt"], full["old_img"],
                                               full["old_txt"]),
        "clip": clip_loss()(F.normalize(full["img"], dim=1), F.normalize(full["txt"], dim=1),
                            torch.tensor(10.0, dtype=torch.float64)),
        "momentum": momentum_contrast_loss(full["img"], full["txt"], full["old_img"],
                                           full["old_txt"], *_queue()),
    }
    for name, loss in single.items():
        gi, gt = torch.autograd.grad(loss, (full["img"], full["txt"]))
        assert out[0][name][0] == pytest.approx(loss.item(), rel=1e-12), name
        for rank in (0, 1):
            rows = slice(rank * 8, (rank + 1) * 8)
            np.testing.assert_allclose(out[rank][name][1], gi[rows].numpy(), atol=1e-12, err_msg=name)
            np.testing.assert_allclose(out[rank][name][2], gt[rows].numpy(), atol=1e-12, err_msg=name)
