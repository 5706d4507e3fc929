"""DIKI: prefix pools, distribution-aware calibration against independent formulas, and the
strategy through ``cl run`` on ``toy-mtil``. The residual prefix attention itself (the public
``cl.models.tokens`` ``prefix_mode="residual"``) is checked term by term in
``tests/models/test_tokens.py``."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from cl.cli import main
from cl.models.backbones import create_backbone
from strategies.adaptation.diki import DIKI, DIKIPrefixes, calibrate, majority, task_statistics


@pytest.fixture(scope="module")
def toy_clip():
    return create_backbone("toy-clip")


def test_fresh_prefixes_leave_the_pretrained_model_and_the_backbone_is_never_modified(toy_clip):
    backbone = copy.deepcopy(toy_clip)
    model = backbone.model.eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    text = toy_clip.tokenizer(["a photo of a red circle.", "two squares"])
    strategy = DIKI(depth_vision=2, depth_text=2, prefix_len_vision=3, prefix_len_text=3)
    strategy.attach(backbone)
    strategy._install(model, 4, torch.Generator().manual_seed(0))
    pool = strategy.prefix_parameters()["vision.0"].detach()
    assert set(strategy.prefix_parameters()) == {"vision.0", "vision.1", "text.0", "text.1"}
    assert pool.shape == (4, 2, 3, model.visual.transformer.width)
    assert pool[:, 0].abs().max() <= 1 and pool[:, 0].std() > 0.3 and not pool[:, 1].any()
    with torch.no_grad():
        strategy._route = (torch.tensor(2), torch.tensor([0.2, 0.5, 0.9]), None)
        fresh = strategy._encode_batch(model, images), strategy._encode_prompts(model, text)
        strategy._route = None
        plain = model.encode_image(images, normalize=True), model.encode_text(text,
                                                                              normalize=True)
    for a, b in zip(fresh, plain, strict=True):  # values start at zero
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert model.state_dict().keys() == weights.keys()
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="depth must be in"):
        DIKIPrefixes(model, (1, 99), 4, (3, 3), torch.Generator())


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
    assert set(pools) == {"vision.0", "text.0"}
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


def test_reset_drops_the_prefixes_and_the_gaussians(toy_clip, tmp_path):
    import streams
    from cl.core.runner import Runner

    stream = streams.get("toy-mtil", domains=["counts", "colours"], n_train=4, n_test=2, seed=0)
    strategy = DIKI(iterations=1, batch_size=4, depth_vision=1, depth_text=1)
    backbone = copy.deepcopy(toy_clip)
    runner = Runner(stream, strategy, backbone, out_dir=tmp_path, seed=0, progress=False)
    ctx = runner.context(0)
    strategy.before_task(ctx)
    strategy.train_task(runner.task_data(0), ctx)
    assert strategy.prefix_parameters() and len(strategy._means) == 1
    strategy.load_state_dict({})
    assert strategy.prefix_parameters() == {} and strategy._means == []
