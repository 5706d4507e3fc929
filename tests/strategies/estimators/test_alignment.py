"""Classifier alignment: pure, seeded, and it fixes a head biased towards the last task."""

from __future__ import annotations

import pytest
import torch

from strategies.estimators.alignment import align_classifier


def _problem() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    C, D = 6, 5
    means = 3 * torch.randn(C, D, generator=g)
    covs = torch.stack([torch.eye(D) * 0.3] * C)
    weight, bias = torch.zeros(C, D), torch.zeros(C)
    bias[3:] = 2.0  # a head that always predicts the classes of the last task
    return weight, bias, means, covs, torch.tensor([0, 0, 0, 1, 1, 1])


def _accuracy(weight: torch.Tensor, bias: torch.Tensor, means: torch.Tensor) -> float:
    g = torch.Generator().manual_seed(1)
    x = means.repeat_interleave(50, 0) + 0.5 * torch.randn(300, means.shape[1], generator=g)
    return float(((x @ weight.T + bias).argmax(1) == torch.arange(6).repeat_interleave(50)).float().mean())


@pytest.mark.parametrize("logit_norm", [0.1, None])
def test_alignment_balances_the_head_and_is_pure_and_seeded(logit_norm) -> None:
    weight, bias, means, covs, task = _problem()
    before = [t.clone() for t in (weight, bias, means, covs)]
    assert _accuracy(weight, bias, means) < 0.2  # always class 3
    W, b = align_classifier(weight, bias, means, covs, task, generator=torch.Generator().manual_seed(3),
                            logit_norm=logit_norm)
    assert _accuracy(W, b, means) > 0.9
    for old, new in zip(before, (weight, bias, means, covs)):
        assert torch.equal(old, new)
    W2, b2 = align_classifier(weight, bias, means, covs, task, generator=torch.Generator().manual_seed(3),
                              logit_norm=logit_norm)
    assert torch.equal(W, W2) and torch.equal(b, b2)


def test_shapes_are_checked() -> None:
    weight, bias, means, covs, task = _problem()
    with pytest.raises(ValueError, match=r"covariances has shape \(6, 5\)"):
        align_classifier(weight, bias, means, covs[:, 0], task, generator=torch.Generator())
