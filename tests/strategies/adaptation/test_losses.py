"""Loss terms of the CLIP fine-tuning baselines against hand-written numpy / scipy formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import log_softmax, softmax
from scipy.stats import entropy

from strategies.adaptation.losses import (
    classification_loss,
    clip_distillation,
    distillation_loss,
    weight_l2_loss,
)
from strategies.lora.base import clip_loss


def _unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    x = torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def _np_soft_ce(teacher: np.ndarray, student: np.ndarray, t: float) -> float:
    """T² · mean over rows of −Σ softmax(teacher/T) · log_softmax(student/T)."""
    p = softmax(teacher / t, axis=1)
    return float(t**2 * np.mean(-(p * log_softmax(student / t, axis=1)).sum(1)))


def test_classification_loss_is_our_lora_loss_without_smoothing_and_smoothed_ce_with():
    image, text = _unit(6, 8, 0), _unit(4, 8, 1)
    target = torch.tensor([0, 3, 1, 1, 2, 0])
    scale = torch.tensor(100.0, dtype=torch.float64)
    assert torch.equal(classification_loss(image, text, target, scale),
                       clip_loss(image, text, target, scale))
    logits = 100.0 * image.numpy() @ text.numpy().T
    logp = log_softmax(logits, axis=1)
    eps = 0.2
    expected = np.mean(-(1 - eps) * logp[np.arange(6), target.numpy()] - eps * logp.mean(1))
    got = classification_loss(image, text, target, scale, label_smoothing=eps)
    assert got.dtype == torch.float64  # fp64 inputs are not rounded through fp32
    np.testing.assert_allclose(got.item(), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="label_smoothing"):
        classification_loss(image, text, target, scale, label_smoothing=1.0)


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0])
def test_distillation_is_t_squared_cross_entropy_and_has_the_kl_gradient(t):
    g = torch.Generator().manual_seed(int(10 * t))
    teacher = torch.randn(5, 7, generator=g, dtype=torch.float64) * 3
    student = (torch.randn(5, 7, generator=g, dtype=torch.float64) * 3).requires_grad_()
    loss = distillation_loss(teacher, student, t)
    expected = _np_soft_ce(teacher.numpy(), student.detach().numpy(), t)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)
    # value = T² (KL(p_t‖p_s) + H(p_t)) per row (scipy), gradient = that of T² KL
    p = softmax(teacher.numpy() / t, axis=1)
    q = softmax(student.detach().numpy() / t, axis=1)
    kl_plus_h = np.mean(entropy(p, axis=1) + entropy(p, q, axis=1))
    np.testing.assert_allclose(loss.item(), t**2 * kl_plus_h, rtol=1e-10)
    (grad,) = torch.autograd.grad(loss, student)
    kl = t**2 * F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1),
                         reduction="batchmean")
    (grad_kl,) = torch.autograd.grad(kl, student)
    torch.testing.assert_close(grad, grad_kl, rtol=1e-10, atol=1e-12)


def test_distillation_rejects_mismatched_logits_and_bad_temperature():
    with pytest.raises(ValueError, match="one shape"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)


@pytest.mark.parametrize("image_loss,text_loss", [(True, True), (True, False), (False, True)])
def test_clip_distillation_distils_texts_per_image_and_images_per_text(image_loss, text_loss):
    student, teacher, texts = _unit(6, 8, 2), _unit(6, 8, 3), _unit(9, 8, 4)
    scale = torch.tensor(50.0, dtype=torch.float64)
    got = clip_distillation(student, teacher, texts, scale, temperature=2.0, image_loss=image_loss,
                            text_loss=text_loss)
    s = 50.0 * student.numpy() @ texts.numpy().T  # (images, texts)
    t = 50.0 * teacher.numpy() @ texts.numpy().T
    expected = (image_loss * _np_soft_ce(t, s, 2.0)          # each image over the texts
                + text_loss * _np_soft_ce(t.T, s.T, 2.0))    # each text over the images
    np.testing.assert_allclose(got.item(), expected, rtol=1e-12)


def test_clip_distillation_pulls_the_student_towards_the_teacher():
    """Its gradient vanishes when the student's embeddings are the teacher's, and not otherwise."""
    teacher, texts = _unit(5, 8, 5), _unit(7, 8, 6)
    scale = torch.tensor(20.0, dtype=torch.float64)
    same = teacher.clone().requires_grad_()
    (g_same,) = torch.autograd.grad(clip_distillation(same, teacher, texts, scale), same)
    assert g_same.abs().max() < 1e-12
    other = _unit(5, 8, 7).requires_grad_()
    (g_other,) = torch.autograd.grad(clip_distillation(other, teacher, texts, scale), other)
    assert g_other.abs().max() > 1e-3


def test_clip_distillation_input_errors():
    a = _unit(3, 4, 0)
    with pytest.raises(ValueError, match="image_loss or text_loss"):
        clip_distillation(a, a, a, torch.tensor(1.0), image_loss=False, text_loss=False)
    with pytest.raises(ValueError, match="differ in shape"):
        clip_distillation(a, _unit(2, 4, 1), a, torch.tensor(1.0))


def test_weight_l2_loss_is_the_squared_distance_with_gradient_to_the_parameters_only():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=g).requires_grad_() for s in ((3, 4), (5,))]
    anchors = [torch.randn(s, generator=g).requires_grad_() for s in ((3, 4), (5,))]
    loss = weight_l2_loss(params, anchors)
    expected = sum(((p.detach().numpy() - a.detach().numpy()) ** 2).sum()
                   for p, a in zip(params, anchors))
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)
    loss.backward()
    for p, a in zip(params, anchors):
        torch.testing.assert_close(p.grad, 2 * (p.detach() - a.detach()))
        assert a.grad is None
    with pytest.raises(ValueError, match="anchors"):
        weight_l2_loss(params, anchors[:1])
    with pytest.raises(ValueError, match="shape"):
        weight_l2_loss(params, anchors[::-1])
