"""l2p, dualprompt and coda-prompt on toy-cil with toy-clip: only prompts, keys and head train,
the backbone stays bit-identical, the references' selection, masking and initialisation rules
hold, and state round-trips."""

from __future__ import annotations

import copy
import io
import tokenize
from pathlib import Path

import pytest
import torch

import strategies
from cl.core.runner import Runner
from cl.models.backbones import create_backbone
from strategies.prompts.coda import CodaPool, gram_schmidt
from strategies.prompts.losses import mask_logits
from strategies.prompts.selection import select

ROOT = Path(__file__).resolve().parents[3]
FAST = {"epochs": 0, "iterations": 2, "batch_size": 8}
NAMES = ("l2p", "dualprompt", "coda-prompt")


def _learn(strategy, runner, tasks):
    for t in tasks:
        ctx = runner.context(t)
        strategy.before_task(ctx)
        strategy.train_task(runner.task_data(t), ctx)
        strategy.after_task(ctx)


def _images(stream, backbone, n=4):
    test = stream[0].load_test()
    return torch.stack([backbone.preprocess(test[i][0]) for i in range(n)])


def test_registered_with_the_references_defaults():
    l2p, dual, coda = (strategies.get(n) for n in NAMES)
    assert (l2p.options.pool_size, l2p.options.prompt_length, l2p.options.top_k) == (10, 5, 5)
    assert l2p.options.lr == pytest.approx(0.03 * 16 / 256) and l2p.options.epochs == 5
    assert (dual.options.g_layers, dual.options.e_layers) == ((0, 1), (2, 3, 4))
    assert dual.options.pull_constraint_coeff == 1.0 and dual.options.top_k == 1
    assert (coda.options.pool_size, coda.options.prompt_length, coda.options.ortho_mu) == \
        (100, 8, 0.0)
    assert coda.options.schedule == "coda-cosine" and coda.options.optimizer == "adam"
    assert all(s.options.train_mask and s.options.head == "linear" for s in (l2p, dual, coda))
    with pytest.raises(ValueError, match="top_k=11 exceeds pool_size=10"):
        strategies.get("l2p", top_k=11)
    with pytest.raises(ValueError, match="g_layers .* overlap"):
        strategies.get("dualprompt", g_layers=(0, 2))
    with pytest.raises(ValueError, match="prompt_length must be even"):
        strategies.get("coda-prompt", prompt_length=5)
    with pytest.raises(TypeError, match="'head' must be one of \\['linear', 'text', 'language'\\]"):
        strategies.get("l2p", head="mlp")


@pytest.mark.parametrize("name", NAMES)
def test_only_prompts_keys_and_head_train_and_the_backbone_is_untouched(name, stream, pristine,
                                                                       tmp_path):
    backbone = copy.deepcopy(pristine)
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    strategy = strategies.get(name, **FAST)
    runner = Runner(stream, strategy, backbone, out_dir=tmp_path, progress=False)
    ctx = runner.context(0)
    strategy.before_task(ctx)
    built = {id(p): p.detach().clone() for p in strategy._modules.parameters()}
    strategy.train_task(runner.task_data(0), ctx)
    strategy.after_task(ctx)
    after = backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    changed = [p for p in strategy._modules.parameters() if not torch.equal(p, built[id(p)])]
    assert changed, "training changed no prompt, key or head"
    trained = strategy.trainable_parameters()
    backbone_size = sum(p.numel() for p in backbone.model.parameters())
    assert 0 < trained < 0.05 * backbone_size
    assert sum(p.numel() for p in changed) <= trained
    names = {n.split(".")[0] for n, _ in strategy._modules.named_parameters()}
    assert names <= {"pool", "g_prompt", "e_pool", "coda", "head"} and "head" in names
    assert ctx.counters["examples_seen"] == 2 * 8


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_to_the_same_predictions(name, stream, pristine, tmp_path):
    strategy = strategies.get(name, **FAST, head="text")
    runner = Runner(stream, strategy, copy.deepcopy(pristine), out_dir=tmp_path / "a",
                    progress=False)
    _learn(strategy, runner, [0])
    assert "head" not in dict(strategy._modules.named_children())  # the text head is frozen
    space = stream.task_label_space([0, 1])
    images = _images(stream, pristine)
    restored = strategies.get(name, **FAST, head="text")
    restored.load_state_dict(copy.deepcopy(strategy.state_dict()))
    again = Runner(stream, restored, copy.deepcopy(pristine), out_dir=tmp_path / "b",
                   progress=False)
    assert torch.equal(restored.predict(images, space, again.context(0)),
                       strategy.predict(images, space, runner.context(0)))


def test_dualprompt_trains_prompt_t_started_from_prompt_t_minus_1(stream, pristine, tmp_path):
    strategy = strategies.get("dualprompt", **FAST)
    runner = Runner(stream, strategy, copy.deepcopy(pristine), out_dir=tmp_path, progress=False)
    _learn(strategy, runner, [0])
    first = strategy.e_pool.prompts[0].clone()
    untouched = strategy.e_pool.prompts[2:].clone()
    ctx = runner.context(1)
    strategy.before_task(ctx)
    assert torch.equal(strategy.e_pool.prompts[1], first)  # shared_prompt_pool
    strategy.train_task(runner.task_data(1), ctx)
    assert torch.equal(strategy.e_pool.prompts[0], first)  # prompt 0 gets no gradient
    assert not torch.equal(strategy.e_pool.prompts[1], first)
    assert torch.equal(strategy.e_pool.prompts[2:], untouched)
    assert strategy.prompt_layers == {"g_layers": (0, 1), "e_layers": (2, 3)}  # 4 blocks


def test_coda_trains_only_the_tasks_components(stream, pristine, tmp_path):
    strategy = strategies.get("coda-prompt", **FAST, ortho_mu=0.1)
    runner = Runner(stream, strategy, copy.deepcopy(pristine), out_dir=tmp_path, progress=False)
    _learn(strategy, runner, [0])
    pool = strategy.coda
    assert pool.per_task == 20
    block0 = copy.deepcopy(pool.blocks[0].state_dict())
    ctx = runner.context(1)
    strategy.before_task(ctx)
    assert torch.allclose(pool.blocks[1].keys.norm(dim=-1), torch.ones(4, 20))  # initialised
    strategy.train_task(runner.task_data(1), ctx)
    assert all(torch.equal(v, pool.blocks[0].state_dict()[k]) for k, v in block0.items())
    head = strategy.head
    assert strategy.trainable_parameters() == sum(
        p.numel() for p in [*pool.blocks[1].parameters(), *head.parameters()])


def test_batchwise_selection_is_the_majority_of_the_batch():
    sim = torch.tensor([[0.9, 0.8, 0.1, 0.0], [0.9, 0.1, 0.8, 0.0], [0.8, 0.1, 0.9, 0.0]])
    assert select(sim, 2).tolist() == [[0, 1], [0, 2], [2, 0]]
    chosen = select(sim, 2, batchwise=True)  # prompt 0 chosen 3 times, 2 twice, 1 once
    assert chosen.shape == (3, 2) and all(sorted(row) == [0, 2] for row in chosen.tolist())


def test_masking_keeps_only_the_tasks_classes():
    logits = torch.arange(12.0).view(2, 6)
    masked = mask_logits(logits, torch.tensor([2, 3]))
    assert torch.equal(masked[:, 2:4], logits[:, 2:4])
    assert torch.isinf(masked[:, [0, 1, 4, 5]]).all()


def test_gram_schmidt_gives_orthonormal_rows_and_pool_needs_enough_components():
    g = torch.Generator().manual_seed(0)
    first = gram_schmidt(torch.zeros(0, 6), 3, g)
    second = gram_schmidt(first, 3, g)
    both = torch.cat([first, second])
    assert torch.allclose(both @ both.T, torch.eye(6), atol=1e-5)
    pool = CodaPool(2, 3, 6, 4, 5)  # 2 layers, 3 tasks, 2 components each, L_p 4, D 5
    pool.initialise(0, g)
    pool.initialise(1, g)
    for layer in range(2):
        keys, attention, prompts = pool.components(layer, 1)
        for rows in (keys, attention, prompts.reshape(4, -1)):
            assert torch.allclose(rows @ rows.T, torch.eye(4), atol=1e-5)
    assert not pool.blocks[2].keys.any()  # task 2 starts when it comes
    with pytest.raises(ValueError, match="pool_size >= the stream's 10 tasks"):
        CodaPool(1, 10, 5, 2, 4)


def _code_lines(path: Path) -> int:
    """Lines holding code: not blank, not comments, not docstrings."""
    import ast

    text = path.read_text()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER)
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in skip:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines - docstrings)


def test_the_user_l2p_example_is_at_most_40_lines_and_learns_on_toy_cil(stream, pristine,
                                                                         tmp_path):
    path = ROOT / "experiments" / "examples" / "l2p_strategy.py"
    assert _code_lines(path) <= 40
    strategy = strategies.get(f"{path}:PromptPool", iterations=3, batch_size=8, lr=1e-2)
    backbone = copy.deepcopy(pristine)
    runner = Runner(stream, strategy, backbone, out_dir=tmp_path, progress=False)
    before = copy.deepcopy(strategy.state_dict())
    _learn(strategy, runner, [0, 1])
    assert before == {} and strategy.state_dict()["tasks_trained"] == 2
    assert 0 < strategy.trainable_parameters() == sum(
        p.numel() for p in strategy._modules.parameters())
    assert strategy.memory_bytes() == 4 * strategy.trainable_parameters()
    assert all(torch.equal(a, b) for a, b in zip(backbone.model.state_dict().values(),
                                                  pristine.model.state_dict().values(),
                                                  strict=True))
    logits = strategy.predict(_images(stream, pristine), stream.task_label_space([0, 1]),
                              runner.context(1))
    assert logits.shape == (4, 4) and torch.isfinite(logits).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_cl_run_on_toy_cil_offline(name, tmp_path):
    """``cl run --stream toy-cil --backbone toy-clip --strategy NAME`` with a few steps per task."""
    import json

    from cl.cli import main

    out = tmp_path / name
    code = main(["run", "--stream", "toy-cil", "--backbone", "toy-clip", "--strategy", name,
                 "--set", "strategy.epochs=2", "--set", "stream.n_train=8",
                 "--set", "stream.n_test=4", "--no-progress", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "completed" and results["completed_tasks"] == 5
    backbone = sum(p.numel() for p in create_backbone("toy-clip").model.parameters())
    for compute in results["compute"]:
        assert 0 < compute["trainable_parameters"] < 0.05 * backbone
        assert compute["memory_bytes"] > 0 and compute["train_flops"] > 0


CRASH = '''
import os

from cl import Plugin


class CrashAfter(Plugin):
    """Raises after task ``CL_TEST_CRASH_AFTER`` when that variable is set."""

    def after_task(self, ctx):
        if os.environ.get("CL_TEST_CRASH_AFTER") == str(ctx.task_index):
            raise RuntimeError("injected crash")
'''


@pytest.mark.slow
@pytest.mark.parametrize("name", ["coda-prompt", "dualprompt"])
def test_a_run_that_failed_mid_stream_resumes_to_the_uninterrupted_matrix(name, tmp_path,
                                                                          monkeypatch, caplog):
    import json
    import logging
    import re

    from cl.cli import main

    plugin = tmp_path / "crash.py"
    plugin.write_text(CRASH)
    argv = ["--stream", "toy-cil", "--backbone", "toy-clip", "--strategy", name,
            "--set", "strategy.epochs=1", "--set", "stream.n_train=8", "--set", "stream.n_test=4",
            "--plugin", f"{plugin}:CrashAfter", "--no-progress"]
    main(["run", "--out", str(tmp_path / "fresh"), *argv])
    monkeypatch.setenv("CL_TEST_CRASH_AFTER", "2")
    assert main(["run", "--out", str(tmp_path / "crashed"), *argv]) != 0
    monkeypatch.delenv("CL_TEST_CRASH_AFTER")
    with caplog.at_level(logging.INFO, logger="cl"):
        assert main(["run", "--out", str(tmp_path / "crashed"), *argv]) == 0
    assert re.search(r"resuming .* after task [23] of 5", caplog.text), caplog.text
    fresh, resumed = (json.loads((tmp_path / d / "results.json").read_text())
                      for d in ("fresh", "crashed"))
    assert resumed["status"] == "completed"
    assert resumed["accuracy_matrix"] == fresh["accuracy_matrix"]
