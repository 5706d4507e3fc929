"""SLCA's slow learner: parameter groups on a real open_clip image tower, the per-task head and
loss against numpy, the step decay against torch's MultiStepLR."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from cl.models.backbones import create_backbone
from strategies.adaptation.slca import (
    ContinualLinearHead,
    current_task_loss,
    multistep_factor,
    slow_learner_param_groups,
)


@pytest.fixture(scope="module")
def base():
    return create_backbone("cl-tiny-vit")


def test_backbone_steps_are_a_fixed_fraction_of_the_heads(base):
    """One SGD step moves the backbone by lr·scale·(g + wd·θ), the head by lr·(g + wd·θ)."""
    visual = copy.deepcopy(base.model.visual)
    head = ContinualLinearHead(visual.output_dim)
    head.add_task(3, torch.Generator().manual_seed(0))
    groups = slow_learner_param_groups(visual.parameters(), head.parameters(), lr=0.1,
                                       backbone_lr_scale=0.01, weight_decay=5e-4)
    assert [g["lr"] for g in groups] == [pytest.approx(0.001), 0.1]
    assert all(g["weight_decay"] == 5e-4 for g in groups)
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4)
    before = [p.detach().clone() for g in groups for p in g["params"]]
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    current_task_loss(head(visual(images)), torch.tensor([0, 1, 2, 1]), 0).backward()
    grads = [p.grad.clone() for g in groups for p in g["params"]]
    opt.step()
    rates = [g["lr"] for g in groups for _ in g["params"]]
    after = [p.detach() for g in groups for p in g["params"]]
    for b, a, grad, rate in zip(before, after, grads, rates):
        torch.testing.assert_close(a, b - rate * (grad + 5e-4 * b), rtol=1e-5, atol=1e-8)


def test_zero_scale_freezes_the_backbone_and_frozen_heads_are_left_out(base):
    visual = copy.deepcopy(base.model.visual)
    head = ContinualLinearHead(visual.output_dim)
    head.add_task(2, torch.Generator().manual_seed(0))
    new = head.add_task(3, torch.Generator().manual_seed(1))
    groups = slow_learner_param_groups(visual.parameters(), head.parameters(), lr=0.01,
                                       backbone_lr_scale=0.0)
    assert len(groups) == 1
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in new.parameters()}
    assert not any(p.requires_grad for p in visual.parameters())
    with pytest.raises(ValueError, match="lr > 0"):
        slow_learner_param_groups([], [], lr=0.0)


def test_step_decay_matches_torch_multisteplr_stepped_per_epoch():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 5], gamma=0.1)
    for epoch in range(8):
        assert multistep_factor(epoch, [3, 5], 0.1) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()


def test_head_concatenates_task_heads_and_freezes_old_ones():
    state = torch.random.get_rng_state()
    head = ContinualLinearHead(6)
    first = head.add_task(2, torch.Generator().manual_seed(0))
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert first.weight.abs().max() <= 2.0 and torch.count_nonzero(first.bias) == 0
    second = head.add_task(3, torch.Generator().manual_seed(1))
    assert not any(p.requires_grad for p in first.parameters())
    assert all(p.requires_grad for p in second.parameters())
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    expected = np.concatenate([x.numpy() @ h.weight.detach().numpy().T + h.bias.detach().numpy()
                               for h in (first, second)], 1)
    np.testing.assert_allclose(head(x).detach().numpy(), expected, rtol=1e-6, atol=1e-7)
    assert head.n_classes == 5
    with pytest.raises(ValueError, match="at least one class"):
        head.add_task(0, torch.Generator())


def test_trunc_normal_init_has_the_reference_scale():
    head = ContinualLinearHead(400)
    w = head.add_task(500, torch.Generator().manual_seed(3)).weight.detach()
    assert w.std().item() == pytest.approx(0.02, rel=0.02)


def test_loss_covers_the_current_task_only():
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    targets = torch.tensor([4, 6, 5, 1, 4])  # the 4th is a class of an earlier task
    got = current_task_loss(logits, targets, known=4)
    logp = log_softmax(logits.numpy()[:, 4:], axis=1)
    keep = targets.numpy() >= 4
    expected = -logp[np.arange(5)[keep], targets.numpy()[keep] - 4].mean()
    np.testing.assert_allclose(got.item(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="known"):
        current_task_loss(logits, targets, known=7)
