"""MagMax: task vectors and their maximum-magnitude merge against numpy, and the strategy on
the toy world (sequential training from θ_t, evaluation with θ₀ + λ·τ_MM, exact resume)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import strategies
import streams
from cl.cli import main
from cl.core.runner import Runner
from cl.models.backbones import create_backbone
from strategies.adaptation.magmax import MagMax
from strategies.adaptation.task_vectors import (
    apply_task_vector,
    max_magnitude_merge,
    task_vector,
)

FAST = {"iterations": 4, "batch_size": 8, "warmup": 1, "lr": 1e-3}


def _vectors(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = [{"a": torch.randn(5, 3, generator=g), "b": torch.randn(7, generator=g)}
           for _ in range(n)]
    out[1]["a"][0, 0] = -out[0]["a"][0, 0]  # a tie in magnitude: the later task wins
    return out


def test_max_magnitude_merge_takes_the_largest_magnitude_entry_later_on_ties():
    vectors = _vectors(3)
    merged = max_magnitude_merge(vectors)
    for name in ("a", "b"):
        stack = np.stack([v[name].numpy() for v in vectors])          # (T, ...)
        mags = np.abs(stack)
        # last index of the maximum magnitude along tasks
        last = stack.shape[0] - 1 - np.argmax(mags[::-1], axis=0)
        expected = np.take_along_axis(stack, last[None], axis=0)[0]
        np.testing.assert_array_equal(merged[name].numpy(), expected)


def test_incremental_merge_equals_the_merge_of_the_whole_list():
    vectors = _vectors(4, seed=1)
    running = max_magnitude_merge(vectors[:1])
    for v in vectors[1:]:
        running = max_magnitude_merge([running, v])
    whole = max_magnitude_merge(vectors)
    assert all(torch.equal(running[k], whole[k]) for k in whole)


def test_task_vector_and_apply_are_the_task_arithmetic_formulas():
    base, tuned = _vectors(2, seed=2)
    tau = task_vector(base, tuned)
    applied = apply_task_vector(base, tau, 0.5)
    for k in base:
        np.testing.assert_array_equal(tau[k].numpy(), tuned[k].numpy() - base[k].numpy())
        np.testing.assert_allclose(applied[k].numpy(), base[k].numpy() + 0.5 * tau[k].numpy(),
                                   rtol=0, atol=1e-7)
    assert all(torch.equal(apply_task_vector(base, tau, 0.0)[k], base[k]) for k in base)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="at least one"):
        max_magnitude_merge([])
    with pytest.raises(ValueError, match="different names"):
        max_magnitude_merge([{"a": torch.zeros(2)}, {"b": torch.zeros(2)}])
    with pytest.raises(ValueError, match="coefficient"):
        apply_task_vector({"a": torch.zeros(2)}, {"a": torch.zeros(2)}, float("nan"))
    with pytest.raises(ValueError, match="max_grad_norm"):
        strategies.get("magmax", max_grad_norm=-1.0)


@pytest.fixture(scope="module")
def stream():
    return streams.get("toy-mtil", domains=["counts", "colours", "shapes"], n_train=8,
                       n_test=6, seed=0)


def test_magmax_trains_sequentially_and_evaluates_the_merged_model(stream, tmp_path):
    """After each task the model holds θ₀ + λ·τ_MM; the next task starts from θ_t."""
    backbone = create_backbone("toy-clip")
    theta0 = {k: p.detach().clone() for k, p in backbone.model.named_parameters()
              if k.startswith("visual.")}
    strategy = MagMax(**FAST)
    starts: list[dict[str, torch.Tensor]] = []
    original = strategy._fit

    def spy(model, groups, data, ctx):
        starts.append({k: p.detach().clone() for k, p in strategy.trained(model).items()})
        return original(model, groups, data, ctx)

    strategy._fit = spy
    Runner(stream[:2], strategy, backbone, out_dir=tmp_path / "run", seed=0,
           progress=False).run()
    theta2 = strategy.sequential_weights()
    assert len(starts) == 2 and set(theta2) == set(theta0)
    theta1 = starts[1]  # task 2 started from θ_1, the sequential weights ...
    merged_after_1 = apply_task_vector(theta0, task_vector(theta0, theta1), 0.5)
    assert not all(torch.equal(theta1[k], merged_after_1[k]) for k in theta0)  # ... not θ_MM
    assert not all(torch.equal(theta1[k], theta0[k]) for k in theta0)
    vectors = [task_vector(theta0, theta1), task_vector(theta0, theta2)]
    expected = apply_task_vector(theta0, max_magnitude_merge(vectors), 0.5)
    now = dict(backbone.model.named_parameters())
    for k in theta0:
        assert torch.equal(now[k].detach(), expected[k]), k
    assert not any(k.startswith("transformer.") for k in strategy.merged_vector())


def test_cli_runs_magmax_on_toy_mtil_offline_and_resume_state_restores_the_merge(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--stream", "toy-mtil", "--backbone", "toy-clip", "--strategy", "magmax",
            "--no-progress", "--out", str(out), "--set", "stream.domains=['counts','colours']",
            "--set", "stream.n_train=8", "--set", "stream.n_test=6",
            *[x for k, v in FAST.items() for x in ("--set", f"strategy.{k}={v}")]]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["completed_tasks"] == 2
    state = torch.load(out / "checkpoints" / "task-0001.pt", weights_only=False)
    assert isinstance(state, dict)
    # a fresh strategy restored from the state writes the same merged weights
    first = MagMax(**FAST)
    backbone = create_backbone("toy-clip")
    reference = copy.deepcopy(backbone)
    stream2 = streams.get("toy-mtil", domains=["counts", "colours"], n_train=8, n_test=6,
                          seed=0)
    Runner(stream2, first, reference, out_dir=tmp_path / "again", seed=0, progress=False).run()
    restored = MagMax(**FAST)
    restored.load_state_dict(first.state_dict())
    restored.attach(backbone)
    for (k, p), (_, q) in zip(backbone.model.named_parameters(),
                              reference.model.named_parameters(), strict=True):
        assert torch.equal(p, q), k


def test_clipped_adamw_is_clip_grad_norm_then_adamw():
    from strategies.adaptation.magmax import ClippedAdamW

    g = torch.Generator().manual_seed(4)
    start = [torch.randn(4, 3, generator=g), torch.randn(3, generator=g)]
    grads = [10 * torch.randn(4, 3, generator=g), 10 * torch.randn(3, generator=g)]
    ours = [torch.nn.Parameter(s.clone()) for s in start]
    ref = [torch.nn.Parameter(s.clone()) for s in start]
    for p, q, gr in zip(ours, ref, grads, strict=True):
        p.grad, q.grad = gr.clone(), gr.clone()
    ClippedAdamW(ours, lr=0.1, weight_decay=0.1, max_norm=1.0).step()
    torch.nn.utils.clip_grad_norm_(ref, 1.0)
    torch.optim.AdamW(ref, lr=0.1, weight_decay=0.1).step()
    assert all(torch.equal(p, q) for p, q in zip(ours, ref, strict=True))
    assert torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours])) <= 1.0 + 1e-6


def test_cl_list_strategies_lists_magmax_and_diki_with_their_options(capsys):
    assert main(["list", "strategies", "--format", "json"]) == 0
    listed = {e["name"]: e["options"] for e in json.loads(capsys.readouterr().out)}
    for name, option in (("magmax", "coefficient"), ("diki", "calibration_scale")):
        assert option in listed[name], listed[name]
