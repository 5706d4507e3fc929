"""End to end offline: ``cl run ... --strategy codyra`` then ``cl export``, loaded back by the real backbone path."""

from __future__ import annotations

import json

import pytest
import torch

import streams
from cl.cli import main
from cl.config import RunConfig
from cl.core.checkpoint import CheckpointStore
from cl.models.backbones import create_backbone
from cl.runtime.data import Preprocessed, loader
from strategies.lora.base import prompts

FAST = ["--set", "stream.n_tasks=2", "--set", "strategy.iterations=4",
        "--set", "strategy.batch_size=16", "--set", "strategy.rank=4"]
CODYRA = ["--set", "strategy.max_kappa=0.5", "--set", "strategy.kappa_steps=2",
          "--set", "strategy.lr=0.005"]


def _accuracy(backbone, stream, j, t):
    """Plain CLIP accuracy of task j over the label space after task t (logits as ``predict``)."""
    space = stream.eval_label_space(j, t)
    pos = {g: i for i, g in enumerate(space.class_ids)}
    task = stream[j]
    data = Preprocessed(task.load_test(), backbone.preprocess, stream.class_offsets[j], task.n_classes)
    model = backbone.model
    correct = total = 0
    with torch.no_grad():
        text = model.encode_text(backbone.tokenizer(prompts(space)), normalize=True)
        for x, y in loader(data, batch_size=256):
            image = model.encode_image(x, normalize=True)
            pred = (model.logit_scale.exp() * image @ text.T).argmax(1)
            correct += int((pred == torch.tensor([pos[int(g)] for g in y])).sum())
            total += len(y)
    return correct / total


def test_cli_run_codyra_records_ranks_and_export_loads_back(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["run", "--stream", "split-digits", "--backbone", "cl-tiny-vit", "--strategy", "codyra",
            "--device", "cpu", "--no-progress", "--out", str(run_dir), *FAST, *CODYRA]
    assert main(argv) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed"
    assert len(results["records"]) == 2
    for record in results["records"]:
        ranks = record["effective_ranks"]
        assert len(ranks) == 2 * 2 * 6 and all(0 <= r <= 4 for r in ranks.values())
        assert record["update_frobenius_norm"] > 0
    assert any(sum(r["effective_ranks"].values()) < 4 * 24 for r in results["records"])
    assert all(c["trainable_parameters"] > 0 for c in results["compute"])

    out = tmp_path / "model.safetensors"
    assert main(["export", str(run_dir), "--to", str(out)]) == 0
    assert "--backbone cl-tiny-vit:" in capsys.readouterr().out
    exported = create_backbone(f"cl-tiny-vit:{out}")
    base = create_backbone("cl-tiny-vit")
    # independently: base weights + the adapted tensors of the last checkpoint
    state = torch.load(CheckpointStore(run_dir).checkpoints()[0], weights_only=True)
    assert state["task"] == 1
    params = dict(base.model.named_parameters())
    with torch.no_grad():
        for name, value in state["strategy"]["weights"].items():
            assert not torch.equal(params[name], value), f"{name} was not adapted"
            params[name].copy_(value)
    for (name, a), b in zip(exported.model.state_dict().items(), base.model.state_dict().values()):
        assert torch.equal(a, b), name
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tokens = base.tokenizer(["a photo of a 3.", "a photo of a 8."])
    with torch.no_grad():
        torch.testing.assert_close(exported.model.encode_image(images),
                                   base.model.encode_image(images), atol=1e-6, rtol=0)
        torch.testing.assert_close(exported.model.encode_text(tokens),
                                   base.model.encode_text(tokens), atol=1e-6, rtol=0)
    # and the exported model scores the run's last accuracy row (a random tiny CLIP has
    # near-tied logits, which last-bit kernel differences may flip: allow 2 of 270 images)
    stream = streams.get("split-digits", n_tasks=2)
    last = [_accuracy(exported, stream, j, 1) for j in range(2)]
    assert last == pytest.approx(results["accuracy_matrix"][-1], abs=2 / 270)


def test_export_bad_input(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nowhere"), "--to", str(tmp_path / "m.safetensors")]) == 2
    assert "not a run directory: no config.toml" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--to", str(tmp_path / "model.pt")]) == 2
    assert "--to must name a *.safetensors file" in capsys.readouterr().err
    nmc = tmp_path / "nmc"
    nmc.mkdir()
    (nmc / "config.toml").write_text(RunConfig(strategy="nmc").to_toml())
    assert main(["export", str(nmc), "--to", str(tmp_path / "m.safetensors")]) == 2
    assert "does not change its backbone" in capsys.readouterr().err
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "config.toml").write_text(RunConfig(strategy="lora", backbone="cl-tiny-vit").to_toml())
    assert main(["export", str(lora), "--to", str(tmp_path / "m.safetensors")]) == 2
    assert "finished no task" in capsys.readouterr().err


def test_cli_run_with_diverging_lr_keeps_results_so_far(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["run", "--stream", "split-digits", "--backbone", "cl-tiny-vit", "--strategy", "lora",
            "--device", "cpu", "--no-progress", "--out", str(run_dir), *FAST,
            "--set", "strategy.lr=1e30"]
    assert main(argv) == 2
    assert "task 'digits-0-1-2-3-4'" in capsys.readouterr().err
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "failed" and "lr=1e+30 is too high" in results["error"]
    assert all(v is not None for v in results["zero_shot"])  # the zero-shot row is kept
