"""WiSE-FT interpolation and ZSCL's running weight average against numpy, on open_clip weights."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
import torch

from cl.models.backbones import create_backbone
from strategies.adaptation.weight_ensemble import RunningWeightAverage, interpolate


@pytest.fixture(scope="module")
def base():
    return create_backbone("cl-tiny-vit")


def _weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _perturbed(model, seed):
    g = torch.Generator().manual_seed(seed)
    return {n: p + 0.01 * torch.randn(p.shape, generator=g) for n, p in _weights(model).items()}


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.8, 1.0])
def test_interpolate_is_wiseft_mixture(base, alpha):
    anchor, tuned = _weights(base.model), _perturbed(base.model, 0)
    mixed = interpolate(anchor, tuned, alpha)
    for name, value in mixed.items():
        expected = (1 - alpha) * anchor[name].numpy() + alpha * tuned[name].numpy()
        np.testing.assert_allclose(value.numpy(), expected, rtol=0, atol=1e-7)
    if alpha in (0.0, 1.0):  # the ends reproduce the anchor / fine-tuned model exactly
        end = anchor if alpha == 0 else tuned
        assert all(torch.equal(mixed[n], end[n]) for n in end)


def test_interpolated_model_predicts_between_its_ends_at_the_ends(base):
    """Loading α = 0 weights into a fine-tuned copy gives back the anchor model's outputs."""
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    tuned = copy.deepcopy(base.model)
    tuned.load_state_dict(_perturbed(base.model, 1), strict=False)
    with torch.no_grad():
        tuned.load_state_dict(interpolate(_weights(base.model), _weights(tuned), 0.0), strict=False)
        assert torch.equal(tuned.encode_image(images), base.model.encode_image(images))


def test_interpolate_rejects_mismatched_weight_sets():
    a = {"w": torch.zeros(2)}
    with pytest.raises(ValueError, match="alpha"):
        interpolate(a, a, 1.5)
    with pytest.raises(ValueError, match="different names"):
        interpolate(a, {"v": torch.zeros(2)}, 0.5)
    with pytest.raises(ValueError, match="shape"):
        interpolate(a, {"w": torch.zeros(3)}, 0.5)
    with pytest.raises(TypeError, match="floating"):
        ints = {"w": torch.zeros(2, dtype=torch.long)}
        interpolate(ints, ints, 0.5)


@pytest.mark.parametrize("total,every", [(10, 5), (7, 2), (3, 1), (1000, 100), (5, 10)])
def test_snapshots_follow_the_reference_loop(total, every):
    """The reference snapshots after steps 0..T with s % every == 0; its step T repeats step T-1."""
    reference = Counter(min(s, total - 1) for s in range(total + 1) if s % every == 0)
    average = RunningWeightAverage({"w": torch.zeros(1)}, every=every, total=total)
    got = [average.snapshots_after(s) for s in range(total)]
    assert got == [reference[s] for s in range(total)]
    with pytest.raises(ValueError, match="step"):
        average.snapshots_after(total)


def test_running_average_is_the_mean_of_start_and_snapshots(base):
    start = _weights(base.model)
    average = RunningWeightAverage(start, every=3, total=8)
    snapshots = []
    for step in range(8):
        current = _perturbed(base.model, 10 + step)
        snapshots += [current] * average.after_step(step, current)
    assert average.count == len(snapshots) == 3  # steps 0, 3, 6; none extra (8 % 3 != 0)
    for name, value in average.average.items():
        expected = np.mean([start[name].numpy()] + [s[name].numpy() for s in snapshots], axis=0)
        np.testing.assert_allclose(value.numpy(), expected, rtol=0, atol=1e-6)
    assert all(torch.equal(start[n], p.detach()) for n, p in base.model.named_parameters())


def test_running_average_input_errors():
    with pytest.raises(ValueError, match="positive"):
        RunningWeightAverage({"w": torch.zeros(1)}, every=0, total=3)
    with pytest.raises(TypeError, match="floating"):
        RunningWeightAverage({"w": torch.zeros(1, dtype=torch.int64)}, every=1, total=3)
