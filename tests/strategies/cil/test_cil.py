"""The CLIP class-incremental methods (``proof``, ``rapf``, ``engine``, ``clap4clip``) on the toy world.

What a user relies on: each runs offline on ``toy-cil`` with ``toy-clip`` and records its
memory (bytes and exemplar count) in results.json; a checkpoint restores the exact
predictions; bad options fail with a message naming them. The measured behaviour table
(accuracy, forgetting against zero-shot and clip-finetune) is ``experiments/cil/toy_cil.py``.
"""

from __future__ import annotations

import copy
import json
import logging
from types import SimpleNamespace

import pytest
import torch

import strategies
import streams
from cl.core.runner import Runner
from cl.models.backbones import create_backbone
from strategies.cil.common import ExemplarMemory, herding
from strategies.cil.rapf import fuse_adapter

FAST = {"proof": {"epochs": 1, "batch_size": 8, "memory_size": 12},
        "rapf": {"epochs": 1, "batch_size": 8, "beta": 0.3, "threshold": 2.0},
        "engine": {"epochs": 1, "batch_size": 8},
        "clap4clip": {"epochs": 1, "batch_size": 8, "forward_times": 2, "memory_size": 12}}
EXEMPLARS = {"proof": True, "rapf": False, "engine": False, "clap4clip": True}


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("toy-clip")


@pytest.fixture(scope="module")
def stream():
    return streams.get("toy-cil", n_tasks=2, n_train=6, n_test=4, seed=0)


@pytest.fixture(scope="module")
def runs(backbone, stream, tmp_path_factory):
    done: dict[str, tuple[dict, object]] = {}
    cache = str(tmp_path_factory.mktemp("cache"))  # features extracted once for all four

    def get(name: str) -> tuple[dict, object]:
        if name not in done:
            strategy = strategies.get(name, **FAST[name])
            out = tmp_path_factory.mktemp(name)
            runner = Runner(stream, strategy, copy.deepcopy(backbone), out_dir=out, seed=0,
                            progress=False, cache_dir=cache)
            runner.run()
            done[name] = (json.loads((out / "results.json").read_text()), strategy)
        return done[name]

    return get


@pytest.mark.parametrize("name", sorted(FAST))
def test_runs_offline_and_records_memory(name, runs):
    results, strategy = runs(name)
    assert results["status"] == "completed"
    A = torch.tensor(results["accuracy_matrix"])
    assert A.shape == (2, 2) and torch.isfinite(A).all()
    memory = [c["memory_bytes"] for c in results["compute"]]
    assert all(m > 0 for m in memory) and memory[1] >= memory[0]
    exemplars = [r["exemplars"] for r in results["records"]]
    assert (exemplars[-1] > 0) == EXEMPLARS[name]
    if EXEMPLARS[name]:
        assert exemplars[-1] <= FAST[name]["memory_size"]
    assert strategy.trainable_parameters() > 0


@pytest.mark.parametrize("name", sorted(FAST))
def test_checkpoint_restores_predictions(name, runs, backbone, stream):
    _, strategy = runs(name)
    restored = strategies.get(name, **FAST[name])
    restored.load_state_dict(copy.deepcopy(strategy.state_dict()))
    ctx = SimpleNamespace(backbone=backbone, seed=0, logger=logging.getLogger("test"))
    x = torch.nn.functional.normalize(torch.randn(5, backbone.embed_dim), dim=-1)
    space = stream.eval_label_space(1, None)
    assert torch.equal(strategy.predict(x, space, ctx), restored.predict(x, space, ctx))


def test_engine_uses_a_descriptor_file(runs, backbone, stream, tmp_path):
    names = [n for task in stream for n in task.class_names]
    des = {a: {b: [f"Mark {i} of {a} unlike {b}." for i in range(2)] for b in names} for a in names}
    path = tmp_path / "toy_des.json"
    path.write_text(json.dumps(des))
    strategy = strategies.get("engine", **FAST["engine"], descriptors=str(path), rerank=1.0,
                              stat=0.0, rerank_top=3)
    out = tmp_path / "run"
    Runner(stream, strategy, copy.deepcopy(backbone), out_dir=out, seed=0, progress=False).run()
    results = json.loads((out / "results.json").read_text())
    assert results["records"][-1]["descriptors"] == str(path)
    ctx = SimpleNamespace(backbone=backbone, seed=0, logger=logging.getLogger("test"))
    x = torch.nn.functional.normalize(torch.randn(6, backbone.embed_dim), dim=-1)
    space = stream.eval_label_space(1, None)
    scores = strategy.predict(x, space, ctx)
    assert ((scores != 0) & torch.isfinite(scores)).sum(1).le(3).all()  # only the top 3 re-ranked
    _, plain = runs("engine")
    assert not torch.allclose(scores, plain.predict(x, space, ctx))


def test_cl_list_strategies_lists_the_four(capsys):
    from cl.cli.app import main

    assert main(["list", "strategies", "--format", "json"]) == 0
    listed = {e["name"] for e in json.loads(capsys.readouterr().out)}
    assert {"proof", "rapf", "engine", "clap4clip"} <= listed


def test_herding_keeps_the_running_mean_closest():
    x = torch.nn.functional.normalize(torch.randn(30, 4, generator=torch.Generator().manual_seed(0)),
                                      dim=-1).double()
    picked = herding(x, 3)
    assert len(set(picked.tolist())) == 3
    first = int(((x - x.mean(0)) ** 2).sum(1).argmin())
    assert int(picked[0]) == first


def test_memory_shrinks_old_classes_to_the_quota():
    mem = ExemplarMemory(12, None, "random")
    g = torch.Generator().manual_seed(0)
    mem.update(torch.randn(20, 3), torch.arange(2).repeat(10), 2, g)       # 6 per class
    assert len(mem) == 12
    mem.update(torch.randn(20, 3), 2 + torch.arange(2).repeat(10), 4, g)   # 3 per class
    assert len(mem) == 12 and (torch.bincount(mem.targets) == 3).all()


def test_rapf_fusion_keeps_new_weight_when_mask_is_one():
    g = torch.Generator().manual_seed(0)
    new, old = torch.randn(6, 6, generator=g).double(), torch.randn(6, 6, generator=g).double()
    assert torch.allclose(fuse_adapter(new, old, mix_bias=1.0), new)
    fused = fuse_adapter(new, old, mix_bias=0.0)
    assert not torch.allclose(fused, new) and not torch.allclose(fused, old)


def test_bad_options_name_themselves(tmp_path):
    with pytest.raises(FileNotFoundError, match="descriptor file"):
        strategies.get("engine", descriptors=str(tmp_path / "missing.json"))
    bad = tmp_path / "des.json"
    bad.write_text(json.dumps({"one": ["not a mapping"]}))
    with pytest.raises(ValueError, match="ENGINE's format"):
        strategies.get("engine", descriptors=str(bad))
    with pytest.raises(ValueError, match="stat"):
        strategies.get("engine", stat=1.5)
    with pytest.raises(ValueError, match="memory budgets"):
        strategies.get("proof", memory_size=-1)
    with pytest.raises(ValueError, match="forward_times"):
        strategies.get("clap4clip", forward_times=0)
    with pytest.raises(ValueError, match="template"):
        strategies.get("rapf", template="no slot")


def test_refuses_task_incremental_streams(backbone, tmp_path):
    mtil = streams.get("toy-mtil", domains=["counts", "colours"], n_train=4, n_test=2, seed=0)
    with pytest.raises(ValueError, match="class-incremental"):  # before the run directory exists
        Runner(mtil, strategies.get("rapf", **FAST["rapf"]), copy.deepcopy(backbone),
               out_dir=tmp_path / "run", seed=0, progress=False).run()
    assert not (tmp_path / "run" / "results.json").exists()
