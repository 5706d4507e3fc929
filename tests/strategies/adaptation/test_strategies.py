"""The six adaptation baselines as runner strategies on the tiny open_clip model and split-digits:
what trains, the end-of-task transforms against independent formulas, routing, state round trips."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

import strategies
import streams
from cl.core.runner import Runner
from cl.errors import OptionError
from cl.models.backbones import create_backbone
from strategies.adaptation.clip_objective import prompts
from strategies.adaptation.finetune import CLIPFinetune, LwF, WiseFT
from strategies.adaptation.moe_adapters import MoEAdapters
from strategies.adaptation.moe_blocks import moe_blocks
from strategies.adaptation.options import (
    FinetuneOptions,
    LwFOptions,
    MoEAdaptersOptions,
    SLCAOptions,
    WiseFTOptions,
    ZSCLOptions,
)
from strategies.adaptation.slca_strategy import SLCA
from strategies.adaptation.zscl import ZSCL

FAST = {"iterations": 3, "batch_size": 8, "warmup": 1, "lr": 1e-3}
NAMES = {"clip-finetune": (CLIPFinetune, FinetuneOptions), "lwf": (LwF, LwFOptions),
         "wise-ft": (WiseFT, WiseFTOptions), "zscl": (ZSCL, ZSCLOptions),
         "moe-adapters": (MoEAdapters, MoEAdaptersOptions), "slca": (SLCA, SLCAOptions)}


@pytest.fixture(scope="module")
def pristine():
    return create_backbone("cl-tiny-vit")


@pytest.fixture()
def backbone(pristine):
    return copy.deepcopy(pristine)


@pytest.fixture(scope="module")
def stream():
    return streams.get("split-digits", n_tasks=2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An image folder and a caption file: ZSCL's reference set."""
    root = tmp_path_factory.mktemp("reference")
    rng = np.random.default_rng(0)
    (root / "images" / "any").mkdir(parents=True)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(
            root / "images" / "any" / f"{i}.png")
    (root / "captions.txt").write_text("a red square\n\na blue circle\na photo of a digit\n")
    return {"reference_images": str(root / "images"), "reference_texts": "captions.txt",
            "data_root": str(root)}


def _images(stream, backbone, task=0, n=6):
    test = stream[task].load_test()
    return torch.stack([backbone.preprocess(test[i][0]) for i in range(n)])


def _clip_logits(backbone, images, space):
    with torch.no_grad():
        img = backbone.model.encode_image(images, normalize=True)
        txt = backbone.model.encode_text(backbone.tokenizer(prompts(space)), normalize=True)
        return backbone.model.logit_scale.exp() * img @ txt.T


def _learn(strategy, runner, tasks, *, end=True):
    for t in tasks:
        ctx = runner.context(t)
        strategy.before_task(ctx)
        strategy.train_task(runner.task_data(t), ctx)
        if end or t != tasks[-1]:
            strategy.after_task(ctx)
    return ctx


def _weights(model, prefix=""):
    return {k: p.detach().double().numpy().copy() for k, p in model.named_parameters()
            if k.startswith(prefix)}


def _restored_predictions(strategy, pristine, stream, images, space, tmp_path):
    """Predictions of a new strategy restored from ``strategy.state_dict()`` on a fresh backbone."""
    fresh = copy.deepcopy(pristine)
    where = {"data_root": strategy.data_root} if hasattr(strategy, "data_root") else {}  # zscl
    restored = type(strategy)(strategy.options, **where)
    restored.load_state_dict(copy.deepcopy(strategy.state_dict()))
    runner = Runner(stream, restored, fresh, out_dir=tmp_path / "restored", progress=False)
    return restored.predict(images, space, runner.context(1)), fresh


def test_registered_with_their_options_as_dataclasses():
    for name, (cls, options) in NAMES.items():
        strategy = strategies.get(name)
        assert type(strategy) is cls and strategy.options == options()
        assert strategy.options_class is options
    assert strategies.get("moe-adapters").options.lr == 1e-3  # the reference's rates
    assert strategies.get("slca").options.batch_size == 128
    with pytest.raises(ValueError, match="no option 'alpah'.*alpha"):
        strategies.get("wise-ft", alpah=0.5)
    with pytest.raises(OptionError, match="'warmup' expects an integer"):
        strategies.get("lwf", warmup="long")
    with pytest.raises(ValueError, match=r"alpha must be a finite number in \[0, 1\]"):
        strategies.get("wise-ft", alpha=1.5)
    with pytest.raises(ValueError, match="reference_images and reference_texts go together"):
        strategies.get("zscl", reference_images="imagenet/train")
    with pytest.raises(ValueError, match="top_k=5 and freeze_per_task=2 must not exceed experts=4"):
        strategies.get("moe-adapters", experts=4, top_k=5)
    with pytest.raises(ValueError, match="image_loss and text_loss are both false"):
        strategies.get("lwf", image_loss=False, text_loss=False)


def test_clip_finetune_trains_the_chosen_tower_and_restores_exactly(stream, backbone, pristine,
                                                                    tmp_path):
    strategy = CLIPFinetune(**FAST, encoders="vision")
    runner = Runner(stream, strategy, backbone, out_dir=tmp_path / "run", progress=False)
    ctx = _learn(strategy, runner, [0])
    assert ctx.counters["examples_seen"] == 3 * 8
    visual = {k: p for k, p in pristine.model.named_parameters() if k.startswith("visual.")}
    assert strategy.trainable_parameters() == sum(p.numel() for p in visual.values())
    before, after = _weights(pristine.model), _weights(backbone.model)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and all(k.startswith("visual.") for k in changed)  # text and logit scale kept
    assert not any(p.requires_grad for p in backbone.model.parameters())
    images, space = _images(stream, backbone), stream.eval_label_space(0, 0)
    expected = strategy.predict(images, space, ctx)
    torch.testing.assert_close(expected, _clip_logits(backbone, images, space))
    assert not torch.allclose(expected, _clip_logits(pristine, images, space))
    got, fresh = _restored_predictions(strategy, pristine, stream, images, space, tmp_path)
    assert torch.equal(got, expected) and fresh.fingerprint == backbone.fingerprint
    # one rate per task, in stream order, checked before the run; lr_per_task replaces lr
    with pytest.raises(ValueError, match="options 'lr' .* and 'lr_per_task' both set"):
        CLIPFinetune(**FAST, lr_per_task=[1e-3, 1e-3, 1e-3])
    bad = CLIPFinetune(**{k: v for k, v in FAST.items() if k != "lr"}, lr_per_task=[1e-3] * 3)
    with pytest.raises(ValueError, match="lr_per_task' has 3 rates but stream 'split-digits' has 2"):
        Runner(stream, bad, copy.deepcopy(pristine), out_dir=tmp_path / "bad", progress=False)


def test_lwf_with_zero_weight_is_continual_fine_tuning_and_moves_otherwise(stream, pristine,
                                                                           tmp_path):
    finals = {}
    for name, strategy in (("finetune", CLIPFinetune(**FAST)),
                           ("lwf0", LwF(**FAST, distill_weight=0.0)), ("lwf", LwF(**FAST))):
        backbone = copy.deepcopy(pristine)
        _learn(strategy, Runner(stream, strategy, backbone, out_dir=tmp_path / name,
                                progress=False), [0])
        finals[name] = _weights(backbone.model)
    assert all(np.array_equal(finals["finetune"][k], finals["lwf0"][k]) for k in finals["lwf"])
    assert any(not np.array_equal(finals["finetune"][k], finals["lwf"][k]) for k in finals["lwf"])


def test_wise_ft_interpolates_towards_the_zero_shot_weights(stream, backbone, pristine, tmp_path):
    """After each task θ = α·θ_fine-tuned + (1 − α)·θ_zero-shot (WiSE-FT Eq. 1), in float64."""
    alpha = 0.3
    strategy = WiseFT(**FAST, alpha=alpha, anchor="zeroshot")
    runner = Runner(stream, strategy, backbone, out_dir=tmp_path / "run", progress=False)
    zeroshot = _weights(pristine.model)
    _learn(strategy, runner, [0])
    start = _weights(backbone.model)
    ctx = _learn(strategy, runner, [1], end=False)
    tuned = _weights(backbone.model)
    strategy.after_task(ctx)
    final = _weights(backbone.model)
    for k, z in zeroshot.items():
        if k == "logit_scale":
            assert np.array_equal(final[k], z)
            continue
        np.testing.assert_allclose(final[k], alpha * tuned[k] + (1 - alpha) * z, rtol=1e-6,
                                   atol=1e-7)
    assert any(not np.allclose(start[k], zeroshot[k]) for k in zeroshot)  # task 0 moved θ
    assert strategy.memory_bytes() == 4 * sum(z.size for k, z in zeroshot.items()
                                              if k != "logit_scale")


def test_zscl_ends_each_task_at_the_mean_of_its_weight_snapshots(stream, backbone, pristine,
                                                                 reference, tmp_path):
    """ZSCL's weight ensemble with period 1 over 3 steps: (θ_start + θ₀ + θ₁ + θ₂ + θ₂) / 5."""
    strategy = ZSCL(**FAST, ensemble_every=1, reference_batch_size=4, **reference)
    runner = Runner(stream, strategy, backbone, out_dir=tmp_path / "run", progress=False)
    snapshots = []
    after_step = strategy._after_step

    def recording(i, total):
        snapshots.append(_weights(backbone.model))
        after_step(i, total)

    strategy._after_step = recording
    start = _weights(backbone.model)
    ctx = _learn(strategy, runner, [0])
    final = _weights(backbone.model)
    assert len(snapshots) == 3 and runner.tracker.records[0]["weight_ensemble_snapshots"] == 4
    for k in start:
        expected = (start[k] + snapshots[0][k] + snapshots[1][k] + 2 * snapshots[2][k]) / 5
        np.testing.assert_allclose(final[k], expected, rtol=1e-5, atol=1e-7)
    assert strategy.memory_bytes() > 0  # the zero-shot teacher stays for the next task
    images, space = _images(stream, backbone), stream.eval_label_space(0, 0)
    got, _ = _restored_predictions(strategy, pristine, stream, images, space, tmp_path)
    assert torch.equal(got, strategy.predict(images, space, ctx))
    # without weight 0 terms it is continual fine-tuning
    plain = ZSCL(**FAST, ensemble_every=0, l2_weight=0.0, distill_weight=0.0, **reference)
    twin = copy.deepcopy(pristine)
    _learn(plain, Runner(stream, plain, twin, out_dir=tmp_path / "plain", progress=False), [0])
    tuned = CLIPFinetune(**FAST)
    other = copy.deepcopy(pristine)
    _learn(tuned, Runner(stream, tuned, other, out_dir=tmp_path / "ft", progress=False), [0])
    a, b = _weights(twin.model), _weights(other.model)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_zscl_names_a_missing_reference_set(stream, backbone, reference, tmp_path):
    strategy = ZSCL(**FAST)  # before the run (the runner asks) and when the task starts
    with pytest.raises(ValueError, match="stream 'split-digits' offers none; set "
                                         "strategy.reference_images"):
        Runner(stream, strategy, backbone, out_dir=tmp_path, progress=False)
    ctx = Runner(stream, ZSCL(**FAST, **reference), backbone, out_dir=tmp_path,
                 progress=False).context(0)
    with pytest.raises(ValueError, match="stream 'split-digits' offers none"):
        strategy.before_task(ctx)
    missing = ZSCL(**FAST, reference_images="nowhere", reference_texts="none.txt",
                   data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="'reference_images': '.*nowhere' does not exist"):
        missing.check_run(backbone, stream)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        missing.before_task(ctx)


def test_moe_adapters_freeze_experts_and_route_to_zero_shot(stream, backbone, pristine, tmp_path):
    options = dict(FAST, experts=4, top_k=2, bottleneck=8, freeze_per_task=1, ddas_iterations=5)
    strategy = MoEAdapters(**options, ddas_threshold=1e9)  # every batch to its best task
    runner = Runner(stream, strategy, backbone, out_dir=tmp_path / "run", progress=False)
    _learn(strategy, runner, [0])
    blocks = [b for _, b in moe_blocks(backbone.model)]
    assert len(blocks) == 4 and runner.tracker.records[0]["frozen_experts"] == 4
    unfrozen = sum(p.numel() for b in blocks for e, f in zip(b.moe.experts, b.moe.frozen)
                   if not f for p in e.parameters())
    ctx = _learn(strategy, runner, [1])
    assert all(len(b.moe.gates) == 2 for b in blocks)
    routers = sum(2 * b.moe.gates[1].numel() for b in blocks)
    assert strategy.trainable_parameters() == routers + unfrozen  # router + experts not frozen
    assert 4 <= runner.tracker.records[1]["frozen_experts"] <= 8
    images, space = _images(stream, backbone, task=1), stream.eval_label_space(1, 1)
    assert set(strategy.routes(images).tolist()) <= {0, 1}
    routed = strategy.predict(images, space, ctx)
    assert not torch.allclose(routed, _clip_logits(pristine, images, space))
    got, _ = _restored_predictions(strategy, pristine, stream, images, space, tmp_path)
    assert torch.equal(got, routed)
    # above the threshold: the frozen zero-shot model, bit for bit plain open_clip
    cautious = MoEAdapters(**options, ddas_threshold=0.0)
    cautious.load_state_dict(copy.deepcopy(strategy.state_dict()))
    other = copy.deepcopy(pristine)
    ctx = Runner(stream, cautious, other, out_dir=tmp_path / "zs", progress=False).context(1)
    rng = torch.get_rng_state()
    cautious.attach(other)  # builds the experts, then loads their weights from the state
    assert torch.equal(torch.get_rng_state(), rng)  # a resumed run's dropout stream is unshifted
    assert (cautious.routes(images) == -1).all()
    torch.testing.assert_close(cautious.predict(images, space, ctx),
                               _clip_logits(pristine, images, space), rtol=0, atol=1e-5)


def test_slca_head_statistics_and_zero_shot_start(stream, backbone, pristine, tmp_path):
    strategy = SLCA(iterations=3, batch_size=8, lr=0.05, head_init="text",
                    ca_samples_per_class=8)
    runner = Runner(stream, strategy, backbone, out_dir=tmp_path / "run", progress=False)
    images, space = _images(stream, backbone, task=1), stream.eval_label_space(1, 1)
    ctx = _learn(strategy, runner, [0])
    # classes without a head layer yet are scored by CLIP's text classifier, current tower
    unseen = stream.task_label_space([1])
    torch.testing.assert_close(strategy.predict(images, unseen, ctx),
                               _clip_logits(backbone, images, unseen))
    before, after = _weights(pristine.model), _weights(backbone.model)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and all(k.startswith("visual.") for k in changed)
    # class statistics: mean and covariance of the task's normalised embeddings
    state = strategy.state_dict()
    data = runner.task_data(0)
    with torch.no_grad():
        x = torch.stack([data.dataset[i][0] for i in range(len(data.dataset))])
        feats = backbone.model.encode_image(x, normalize=True).double().numpy()
    labels = data.targets.numpy()
    for row, c in enumerate(state["classes"]):
        np.testing.assert_allclose(state["means"][row].numpy(), feats[labels == c].mean(0),
                                   atol=1e-6)
        np.testing.assert_allclose(state["covariances"][row].numpy(),
                                   np.cov(feats[labels == c].T), atol=1e-6)
    # a text-initialised layer starts at the zero-shot logits s·î·t̂ᵀ (bias 0)
    ctx1 = runner.context(1)
    strategy.before_task(ctx1)
    torch.testing.assert_close(strategy.predict(images, unseen, ctx1),
                               _clip_logits(backbone, images, unseen), rtol=1e-5, atol=1e-5)
    strategy.train_task(runner.task_data(1), ctx1)
    strategy.after_task(ctx1)
    assert [r.get("aligned_classes") for r in runner.tracker.records] == [5, 10]
    assert strategy.trainable_parameters() == sum(
        p.numel() for p in pristine.model.visual.parameters()) + 5 * (pristine.model.visual.output_dim + 1)
    expected = strategy.predict(images, space, ctx1)
    got, _ = _restored_predictions(strategy, pristine, stream, images, space, tmp_path)
    assert torch.equal(got, expected)
