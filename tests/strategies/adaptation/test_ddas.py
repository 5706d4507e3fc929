"""DDAS, MoE-Adapters' autoencoder selector: decisions against a numpy re-computation, routing of
unseen domains to zero-shot, the training schedule, input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from strategies.adaptation.ddas import DDAS, ZERO_SHOT, Autoencoder, train_autoencoder

D = 24


def _domain(centre: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(8, D, generator=torch.Generator().manual_seed(123)) * 3
    return centres[centre] + 0.4 * torch.randn(n, D, generator=g)


@pytest.fixture(scope="module")
def fitted() -> DDAS:
    """Autoencoders of the zero-shot reference domain (centre 0) and tasks 0-2 (centres 1-3)."""
    X = torch.cat([_domain(c, 80, c) for c in range(4)])
    y = torch.repeat_interleave(torch.tensor([ZERO_SHOT, 0, 1, 2]), 80)
    return DDAS(threshold=1.0, iterations=150, batch_size=16, random_state=0).fit(X, y)


def _np_errors(ddas: DDAS, X: torch.Tensor) -> np.ndarray:
    """(N, K) per-image MSE of every autoencoder, computed in numpy from its weights."""
    z = 1 / (1 + np.exp(-X.double().numpy()))
    errors = []
    for ae in ddas.autoencoders_:
        w1, b1 = (t.detach().double().numpy() for t in (ae.encoder[0].weight, ae.encoder[0].bias))
        w2, b2 = (t.detach().double().numpy() for t in (ae.decoder[0].weight, ae.decoder[0].bias))
        out = 1 / (1 + np.exp(-(np.maximum(z @ w1.T + b1, 0) @ w2.T + b2)))
        errors.append(((out - z) ** 2).mean(1))
    return np.stack(errors, 1)


def _np_routes(errors: np.ndarray, domains: list[int], threshold: float) -> np.ndarray:
    best = errors.argmin(1)
    routes = np.array(domains)[best]
    routes[errors[np.arange(len(errors)), best] > threshold] = ZERO_SHOT
    return routes


@pytest.mark.parametrize("per_sample", [False, True])
def test_decisions_follow_the_reference_rule(fitted, per_sample):
    """argmin of the reconstruction error, zero-shot above the threshold or for the reference
    domain; per batch (the batch-mean error, as the reference) or per image."""
    fitted.per_sample = per_sample
    mixed = torch.cat([_domain(c, 5, 100 + c) for c in range(6)])  # centres 4, 5 never learned
    errors = _np_errors(fitted, mixed)
    quantiles = np.quantile(errors.min(1), [0.2, 0.5, 0.9])
    for threshold in [*quantiles.tolist(), 10.0]:
        fitted.threshold = threshold
        if per_sample:
            expected = _np_routes(errors, fitted.domains_, threshold)
            np.testing.assert_allclose(fitted.decision_function(mixed).numpy(), errors, rtol=1e-5)
        else:
            batch = _np_routes(errors.mean(0, keepdims=True), fitted.domains_, threshold)
            expected = np.repeat(batch, len(mixed))
        np.testing.assert_array_equal(fitted.predict(mixed).numpy(), expected)
    fitted.per_sample, fitted.threshold = False, 1.0


def test_images_of_domains_not_yet_seen_go_to_zero_shot(fitted):
    fitted.per_sample = True
    seen_errors = np.concatenate(
        [_np_errors(fitted, _domain(c, 40, 200 + c)).min(1) for c in range(1, 4)])
    fitted.threshold = float(seen_errors.max())
    for task, centre in enumerate((1, 2, 3)):
        assert (fitted.predict(_domain(centre, 40, 200 + centre)) == task).all()
    for unseen in (4, 5, 6):
        assert (fitted.predict(_domain(unseen, 40, 300 + unseen)) == ZERO_SHOT).all()
    # images like the reference domain go to zero-shot although they are reconstructed well
    reference = _domain(0, 40, 400)
    assert (_np_errors(fitted, reference).argmin(1) == 0).all()
    assert (fitted.predict(reference) == ZERO_SHOT).all()
    fitted.per_sample, fitted.threshold = False, 1.0


def test_training_uses_the_reference_step_decay():
    """Rate 0.01 · 0.1^⌊epoch / decay⌋: with 2 batches per epoch and decay every 2 epochs the
    steps run at 0.01 ×4, 0.001 ×4, 1e-4 ×2; replayed with torch's Adam at those rates."""
    batches = [_domain(1, 8, s) for s in range(10)]
    torch.manual_seed(0)
    ours = Autoencoder(D, 5)
    replay = Autoencoder(D, 5)
    replay.load_state_dict(ours.state_dict())
    losses = train_autoencoder(ours, batches, batches_per_epoch=2, lr=0.01, lr_decay_epochs=2,
                               weight_decay=1e-4)
    opt = torch.optim.Adam(replay.parameters(), lr=0.01, weight_decay=1e-4)
    for i, x in enumerate(batches):
        opt.param_groups[0]["lr"] = [0.01, 0.001, 1e-4][i // 4]
        z = torch.sigmoid(x)
        loss = ((replay(z) - z) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), replay.parameters()))
    assert len(losses) == 10 and losses[-1] < losses[0]


def test_fitting_is_repeatable_and_fit_starts_over(fitted):
    X = torch.cat([_domain(c, 80, c) for c in range(4)])
    y = torch.repeat_interleave(torch.tensor([ZERO_SHOT, 0, 1, 2]), 80)
    again = DDAS(threshold=1.0, iterations=150, batch_size=16, random_state=0).fit(X, y)
    assert all(torch.equal(a, b) for a, b in zip(again.autoencoders_.parameters(),
                                                 fitted.autoencoders_.parameters()))
    again.fit(X[80:160], y[80:160])
    assert again.domains_ == [0] and len(again.autoencoders_) == 1


def test_no_autoencoder_means_zero_shot_and_bad_inputs_are_errors(fitted):
    assert (DDAS(threshold=0.1).predict(torch.zeros(3, D)) == ZERO_SHOT).all()
    with pytest.raises(ValueError, match="already have"):
        DDAS(threshold=1.0, iterations=2).fit(_domain(1, 4, 0), torch.zeros(4)).partial_fit(
            _domain(1, 4, 0), torch.zeros(4))
    with pytest.raises(ValueError, match="features"):
        fitted.predict(torch.zeros(2, D + 1))
    with pytest.raises(ValueError, match="y must be"):
        DDAS(threshold=1.0).fit(torch.zeros(4, D), torch.zeros(3))
    with pytest.raises(ValueError, match="iterations"):
        DDAS(threshold=1.0, iterations=0).fit(torch.zeros(4, D), torch.zeros(4))
    with pytest.raises(ValueError, match="-1"):
        DDAS(threshold=1.0).fit(torch.zeros(4, D), torch.full((4,), -2))
    with pytest.raises(TypeError, match="float tensor"):
        fitted.predict(np.zeros((2, D)))
