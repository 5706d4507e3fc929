"""contrastive-ft, er-contrastive, mod-x and ctp: their schedule, step, terms and memory, checked
against independent formulas, and each run from the command line on an image-text stream."""

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import strategies
from cl import Runner, create_backbone
from cl.cli import main
from strategies.imagetext.base import ContrastiveFinetune, lr_factor
from strategies.imagetext.losses import modx_distillation_loss
from strategies.imagetext.options import ContrastiveOptions, CTPOptions, ModXOptions
from strategies.imagetext.replay import ERContrastive


@pytest.fixture
def backbone():
    return create_backbone("cl-tiny-vit")


def _runner(stream, strategy, backbone, tmp_path):
    return Runner(stream, strategy, backbone, out_dir=tmp_path, progress=False)


def test_lr_factor_is_modx_warmup_cosine_and_ctp_cosine():
    total = 50
    warmup = int(0.2 * total)  # Mod-X: get_cosine_schedule_with_warmup(0.2 T), LambdaLR
    modx = [i / max(1, warmup) if i < warmup else
            max(0.0, 0.5 * (1 + math.cos(math.pi * (i - warmup) / max(1, total - warmup))))
            for i in range(total)]
    assert [lr_factor(i, total, warmup) for i in range(total)] == pytest.approx(modx)
    init, low = 1e-4, 1e-6  # CTP utils.cosine_scheduler, no warm-up
    ctp = low + 0.5 * (init - low) * (1 + np.cos(np.pi * np.arange(total) / total))
    assert [init * lr_factor(i, total, 0, low / init) for i in range(total)] == pytest.approx(ctp)


@pytest.mark.parametrize("bad, match", [
    ({"batch_size": 0}, "batch_size"), ({"lr": -1.0}, "lr"), ({"min_lr": 1.0}, "min_lr"),
    ({"warmup": 1.5}, "warmup"), ({"caption": "all"}, "caption"),
    ({"betas": (0.9,)}, "betas"), ({"iterations": 0}, "iterations")])
def test_bad_options_name_the_option(bad, match):
    with pytest.raises(ValueError, match=match):
        ContrastiveOptions(**bad)


def test_ctp_needs_a_queue_that_whole_batches_fill():
    with pytest.raises(ValueError, match="queue_size"):
        CTPOptions(batch_size=48, queue_size=100)
    with pytest.raises(ValueError, match="alpha"):
        ModXOptions(alpha=-1.0)


def test_one_step_is_adamw_on_the_symmetric_clip_loss(tmp_path, backbone, caption_stream):
    stream = caption_stream(2, n_train=8, n_test=4)
    strategy = ContrastiveFinetune(iterations=1, batch_size=8, lr=1e-3, eps=1.0,
                                   weight_decay=0.1, caption="first")
    runner = _runner(stream, strategy, backbone, tmp_path)
    ctx, data = runner.context(0), runner.task_data(0)
    model = backbone.model
    expected = copy.deepcopy(model).train().requires_grad_(True)
    images = torch.stack([data.dataset[i][0] for i in range(8)])
    tokens = backbone.tokenizer([data.dataset.captions[i][0] for i in range(8)])
    img = F.normalize(expected.encode_image(images), dim=-1)
    txt = F.normalize(expected.encode_text(tokens), dim=-1)
    logits = expected.logit_scale.exp() * img @ txt.T
    y = torch.arange(8)
    loss = -(logits.log_softmax(1)[y, y].mean() + logits.T.log_softmax(1)[y, y].mean()) / 2
    loss.backward()
    torch.optim.AdamW(expected.parameters(), lr=1e-3, eps=1.0, weight_decay=0.1).step()
    strategy.before_task(ctx)
    strategy.train_task(data, ctx)
    got, want = dict(model.named_parameters()), dict(expected.named_parameters())
    worst = max(float((got[k] - want[k]).detach().abs().max()) for k in got)
    assert worst < 1e-6
    moved = max(float((got[k] - p).abs().max()) for k, p in
                create_backbone("cl-tiny-vit").model.named_parameters())
    assert moved > 1e-5  # the step did change the weights
    assert not any(p.requires_grad for p in model.parameters())  # frozen again after the task
    assert ctx.counters["examples_seen"] == 8 and ctx.counters["train_flops"] > 0


def test_modx_distils_the_model_of_the_task_start_with_weight_alpha(tmp_path, backbone,
                                                                    caption_stream):
    stream = caption_stream(2, n_train=8, n_test=4)
    strategy = strategies.get("mod-x", iterations=1, batch_size=8, alpha=20.0)
    runner = _runner(stream, strategy, backbone, tmp_path)
    ctx, data = runner.context(0), runner.task_data(0)
    strategy.attach(backbone)
    model = backbone.model
    strategy._begin_task(model, ctx)
    x = torch.stack([data.dataset[i][0] for i in range(8)])
    tokens = backbone.tokenizer([data.dataset.captions[i][0] for i in range(8)])
    image, text = model.encode_image(x, normalize=True), model.encode_text(tokens, normalize=True)
    terms = strategy._terms(model, x, tokens, image, text, model.logit_scale.exp())
    assert float(terms["distillation"]) == pytest.approx(0.0, abs=1e-5)  # old = new at the start
    with torch.no_grad():
        for p in model.visual.parameters():
            p.add_(0.05 * torch.randn_like(p))
    new_image = model.encode_image(x, normalize=True)
    terms = strategy._terms(model, x, tokens, new_image, text, model.logit_scale.exp())
    old_image = strategy._old.encode_image(x, normalize=True)
    assert float(terms["distillation"]) == pytest.approx(
        20.0 * float(modx_distillation_loss(new_image, text, old_image, text)), rel=1e-5)
    assert float(terms["distillation"]) > 0


def test_ctp_updates_the_momentum_model_before_encoding_and_enqueues_the_batch(
        tmp_path, backbone, caption_stream):
    stream = caption_stream(2, n_train=8, n_test=4)
    strategy = strategies.get("ctp", iterations=1, batch_size=8, queue_size=32)
    runner = _runner(stream, strategy, backbone, tmp_path)
    ctx, data = runner.context(0), runner.task_data(0)
    strategy.attach(backbone)
    model = backbone.model
    x = torch.stack([data.dataset[i][0] for i in range(8)])
    tokens = backbone.tokenizer([data.dataset.captions[i][0] for i in range(8)])

    def step():
        image, text = model.encode_image(x, normalize=True), model.encode_text(tokens, normalize=True)
        return strategy._terms(model, x, tokens, image, text, model.logit_scale.exp())

    strategy._begin_task(model, ctx)
    start = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    terms = step()
    assert set(terms) == {"contrastive", "momentum_contrast"}  # first task: no topology term
    for (name, m), p0, p in zip(strategy._momentum.named_parameters(), start.parameters(),
                                model.parameters(), strict=True):
        assert torch.allclose(m, 0.995 * p0 + 0.005 * p, atol=1e-6), name
    queued = strategy.queue_.image[:8].clone()
    expected = F.normalize(strategy._momentum.encode_image(x, normalize=True), dim=1)
    assert torch.allclose(queued, expected, atol=1e-5) and strategy.queue_.pointer == 8
    strategy._end_task(ctx)
    strategy._tasks_trained = 1
    strategy._begin_task(model, ctx)  # later task: momentum and reference re-copied
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02)
    terms = step()
    assert set(terms) == {"contrastive", "momentum_contrast", "topology"}
    for m, r, p in zip(strategy._momentum.parameters(), ref.parameters(), model.parameters(),
                       strict=True):
        assert torch.allclose(m, 0.9 * r + 0.05 * p + 0.05 * r, atol=1e-6)
    assert strategy.queue_.pointer == 16  # the queue persists across tasks


def test_er_memory_is_reservoir_sampling_over_every_pair_seen(tmp_path, backbone, caption_stream):
    stream = caption_stream(3, n_train=4, n_test=4)
    strategy = ERContrastive(memory=5, iterations=1, batch_size=4)
    runner = _runner(stream, strategy, backbone, tmp_path)
    expected, seen, draws = [], 0, torch.Generator()
    for t in range(3):
        ctx = runner.context(t)
        draws.set_state(ctx.generator.get_state())
        strategy._end_task(ctx)
        for i in range(4):  # Vitter's Algorithm R, as CTP's exemplar(buffer='ER')
            if len(expected) < 5:
                expected.append((t, i))
            else:
                j = int(torch.randint(0, seen + 1, (1,), generator=draws))
                if j < 5:
                    expected[j] = (t, i)
            seen += 1
    assert strategy.memory_ == expected and strategy.seen_ == 12
    stored = {(t, i) for t, i in expected}
    sizes = sum(len(stream[t].load_train().images[i]) + sum(
        len(c.encode()) for c in stream[t].load_train().captions[i]) for t, i in stored)
    assert strategy.memory_bytes() == sizes
    parts = strategy._parts(runner.task_data(2), runner.context(2))
    assert sum(len(p) for p in parts) == 4 + 5  # the task's pairs and the stored ones
    assert set(parts[1].captions) <= set(stream[0].load_train().captions)


@pytest.mark.parametrize("name", ["contrastive-ft", "er-contrastive", "mod-x", "ctp"])
def test_each_strategy_runs_from_the_command_line(name, tmp_path, registered_captions):
    out = tmp_path / name
    argv = ["run", "--stream", registered_captions, "--backbone", "cl-tiny-vit", "--strategy", name,
            "--set", "strategy.iterations=2", "--set", "strategy.batch_size=8",
            "--set", "strategy.lr=0.001", "--set", "stream.n_train=8", "--set", "stream.n_test=6",
            "--out", str(out), "--no-progress"]
    if name == "ctp":
        argv += ["--set", "strategy.queue_size=16"]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["strategy"] == name and res["score"] == "mean_recall"
    assert {"i2t_recall@1", "t2i_recall@10", "mean_recall"} <= set(res["scores"])
    assert all(c["examples_seen"] == 16 for c in res["compute"])
    if name == "ctp":  # τ fixed at CTP's 0.07: the learned scale is unused and never moves
        assert res["records"][0]["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-6)
    else:
        assert res["records"][0]["logit_scale"] != pytest.approx(1 / 0.07, rel=1e-6)  # it trained
    assert (out / "retrieval_matrices.png").is_file()
    assert "### mean_recall" in (out / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["contrastive-ft", "er-contrastive", "mod-x", "ctp"])
def test_a_killed_run_resumes_with_the_same_scores(name, tmp_path, registered_captions):
    base = ["run", "--stream", registered_captions, "--backbone", "cl-tiny-vit", "--strategy", name,
            "--set", "stream.n_tasks=3", "--set", "strategy.iterations=10",
            "--set", "strategy.batch_size=8", "--set", "strategy.lr=0.001", "--no-progress"]
    if name == "ctp":
        base += ["--set", "strategy.queue_size=16"]
    assert main([*base, "--out", str(tmp_path / "full")]) == 0
    assert main([*base, "--out", str(tmp_path / "cut")]) == 0
    ckpts = sorted((tmp_path / "cut" / "checkpoints").glob("task-*"))
    assert len(ckpts) == 2
    ckpts[-1].unlink()  # as if killed during the last task: resume after the one before
    (tmp_path / "cut" / "results.json").unlink()
    assert main([*base, "--out", str(tmp_path / "cut")]) == 0
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    cut = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert cut["scores"] == full["scores"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["contrastive-ft", "er-contrastive", "mod-x", "ctp"])
def test_two_gloo_processes_train_on_the_global_contrastive_batch(name, tmp_path,
                                                                  registered_captions,
                                                                  cli_on_two_ranks):
    """Features are gathered with gradients: two ranks of 4 pairs train as one process of 8.

    ``eps=1`` keeps AdamW's first steps continuous in the gradient: with a tiny ε a parameter
    whose exact gradient is 0 (the key bias of attention) moves by ±lr on the sign of
    rounding noise, which differs between one and two processes."""
    base = ["run", "--stream", registered_captions, "--backbone", "cl-tiny-vit", "--strategy", name,
            "--set", "strategy.iterations=5", "--set", "strategy.batch_size=8",
            "--set", "strategy.lr=0.001", "--set", "strategy.eps=1.0", "--set", "stream.n_test=9",
            "--no-progress"]
    if name == "ctp":
        base += ["--set", "strategy.queue_size=16"]
    assert main([*base, "--out", str(tmp_path / "one")]) == 0
    cli_on_two_ranks([*base, "--out", str(tmp_path / "two")])
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["status"] == "completed"
    weights = [torch.load(tmp_path / run / "checkpoints" / "task-0001.pt",
                          weights_only=True)["strategy"]["weights"] for run in ("one", "two")]
    assert max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0]) < 2e-5
    for score, matrix in one["scores"].items():
        assert np.allclose(two["scores"][score], matrix, atol=1e-9), score
    assert [c["examples_seen"] for c in two["compute"]] == [c["examples_seen"] for c in one["compute"]]
    assert two["records"][-1]["logit_scale"] == pytest.approx(one["records"][-1]["logit_scale"],
                                                              rel=1e-5)
