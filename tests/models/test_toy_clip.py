"""``toy-clip``: shipped weights match their manifest and recipe, load through the normal backbone
path, know the held-in world zero-shot and not the held-out one; on it the retention monitor sees
adaptation forget, GDA's zero-shot ensemble helps few-shot, and a merged CoDyRA model exports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import streams
from cl.cli import main
from cl.models.backbones import create_backbone
from cl.models.weights import PRETRAINED_DIR, available_backbones, resolve
from strategies.adaptation.clip_objective import prompts
from streams.toyworld.attributes import DOMAINS

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = json.loads((PRETRAINED_DIR / "toy-clip.json").read_text())
WEIGHTS = PRETRAINED_DIR / MANIFEST["file"]


@pytest.fixture(scope="module")
def toy():
    return create_backbone("toy-clip")


def _run(tmp_path, name, *argv):
    out = tmp_path / name
    code = main(["run", "--backbone", "toy-clip", "--device", "cpu", "--no-progress", "--out",
                 str(out), *argv])
    assert code == 0
    return json.loads((out / "results.json").read_text()), out


def test_shipped_weights_match_their_manifest_and_the_recipe():
    data = WEIGHTS.read_bytes()
    assert hashlib.sha256(data).hexdigest() == MANIFEST["sha256"]
    assert len(data) == MANIFEST["bytes"] <= 10_000_000
    assert {"experiments/toy_clip/pretrain.py", "cl/models/model_configs/toy-clip.json",
            "streams/toyworld/render.py"} <= set(MANIFEST["recipe_files"])
    recipe = hashlib.sha256()
    for name in MANIFEST["recipe_files"]:
        recipe.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
    assert recipe.hexdigest() == MANIFEST["recipe_sha256"], (
        "the toy-clip recipe changed but the shipped weights were not rebuilt: run "
        "`python experiments/toy_clip/pretrain.py` and commit cl/models/pretrained/toy-clip.*")


def test_backbone_spec_loads_the_shipped_weights(toy, capsys):
    assert resolve("toy-clip").checkpoint == WEIGHTS
    assert "toy-clip" in available_backbones()
    assert main(["list", "backbones"]) == 0 and "toy-clip" in capsys.readouterr().out.split()
    state = load_file(str(WEIGHTS))
    model_state = toy.model.state_dict()
    assert state.keys() == model_state.keys()
    for key, value in state.items():
        assert torch.equal(model_state[key], value.float()), key
    assert toy.fingerprint == create_backbone(f"toy-clip:{WEIGHTS}").fingerprint
    assert toy.embed_dim == 64 and toy.preprocess(Image.new("RGB", (32, 32))).shape == (3, 32, 32)


def test_cl_run_zeroshot_knows_the_held_in_world_and_not_the_held_out(tmp_path):
    results, _ = _run(tmp_path, "zs", "--stream", "toy-mtil", "--strategy", "zeroshot",
                      "--set", "stream.n_train=1")
    zero = dict(zip(results["tasks"], results["zero_shot"], strict=True))
    chance = {t: 1 / len(c) for t, c in zip(results["tasks"], results["class_names"], strict=True)}
    n_test = {t: 50 * len(c) for t, c in zip(results["tasks"], results["class_names"], strict=True)}
    # the bar: >= 3x chance, or halfway from chance to 100 % for 2-3 classes
    bar = {t: (c + 1) / 2 if c >= 1 / 3 else 3 * c for t, c in chance.items()}
    assert sum(zero[t] >= bar[t] for t in zero) >= len(zero) / 2
    held_out = [t for t in zero if DOMAINS[t].held_out]
    for task in set(zero) - set(held_out):  # far above chance: > 5 binomial std of a guesser
        sigma = np.sqrt(chance[task] * (1 - chance[task]) / n_test[task])
        assert zero[task] >= chance[task] + 5 * sigma, (task, zero[task])
    # held out: prompts of random word vectors, chance in expectation, never "known"
    assert held_out and all(zero[t] < bar[t] for t in held_out)
    assert abs(np.mean([zero[t] - chance[t] for t in held_out])) <= 0.1


def test_retention_monitor_sees_an_adapted_backbone_forget(tmp_path):
    """ZSCL's knowledge-retention view: adapting the image tower hard on new shapes costs
    zero-shot accuracy on held-in domains that are never trained."""
    plugin = "plugins.zero-shot-retention"
    results, _ = _run(tmp_path, "lora", "--stream", "toy-mtil", "--strategy", "lora",
                      "--set", 'stream.domains=["new-shapes"]', "--set", "stream.n_test=10",
                      "--set", "strategy.rank=32", "--set", "strategy.lr=0.01",
                      "--set", "strategy.encoders=vision", "--set", "strategy.iterations=15",
                      "--set", "strategy.batch_size=32", "--plugin", "zero-shot-retention",
                      "--set", f"{plugin}.stream=toy-mtil", "--set",
                      f'{plugin}.stream_options={{domains = ["colours", "backgrounds"], n_test = 20}}')
    before = results["records"][0]["zero_shot_retention_before"]
    after = results["records"][0]["zero_shot_retention"]
    assert before["colours"] >= 0.9 and before["backgrounds"] >= 0.9
    assert after["colours"] <= before["colours"] - 0.3, (before, after)


def test_gda_ensemble_with_zero_shot_beats_gda_alone_few_shot(tmp_path):
    """Wang et al. (ICLR 2024), few-shot: with 5 shots GDA's class means and covariance are
    poor; adding the zero-shot head (alpha chosen on held-out training shots) helps. Two
    held-in domains, task-agnostic over their 11 classes."""
    argv = ("--stream", "toy-xtail", "--strategy", "gda", "--set", 'stream.domains=["shapes", "digits"]',
            "--set", "stream.n_shots=5", "--set", "stream.n_test=20")
    alone, _ = _run(tmp_path, "alone", *argv, "--set", "strategy.ensemble=false")
    ensemble, _ = _run(tmp_path, "ensemble", *argv)
    assert ensemble["metrics"]["average_accuracy"] >= alone["metrics"]["average_accuracy"] + 0.05
    assert ensemble["metrics"]["average_accuracy"] >= np.mean(ensemble["zero_shot"]) - 0.05


def _clip_accuracy(backbone, stream, j):
    """Accuracy of task j as the adapter strategies predict: CLIP logits over the first-template
    prompts of its label space."""
    space = stream.eval_label_space(j, len(stream) - 1)
    data = stream[j].load_test()
    with torch.no_grad():
        text = backbone.model.encode_text(backbone.tokenizer(prompts(space)), normalize=True)
        images = torch.stack([backbone.preprocess(data[i][0]) for i in range(len(data))])
        pred = (backbone.model.encode_image(images, normalize=True) @ text.T).argmax(1)
    return int((pred == torch.as_tensor(data.targets)).sum()) / len(data)


def test_merged_codyra_model_keeps_its_accuracy_after_export(tmp_path, capsys):
    domains = ["colours", "new-colours"]
    results, run_dir = _run(tmp_path, "codyra", "--stream", "toy-mtil", "--strategy", "codyra",
                            "--set", f"stream.domains={json.dumps(domains)}",
                            "--set", "stream.n_test=20", "--set", "strategy.iterations=10",
                            "--set", "strategy.batch_size=32", "--set", "strategy.lr=0.005",
                            "--set", "strategy.max_kappa=0.05", "--set", "strategy.kappa_steps=2")
    assert any(sum(r["effective_ranks"].values()) < 16 * 42 for r in results["records"])
    out = tmp_path / "model.safetensors"
    assert main(["export", str(run_dir), "--to", str(out)]) == 0
    assert "--backbone toy-clip:" in capsys.readouterr().out
    exported = create_backbone(f"toy-clip:{out}")
    assert exported.fingerprint != create_backbone("toy-clip").fingerprint
    stream = streams.get("toy-mtil", domains=domains, n_test=20)
    last = [_clip_accuracy(exported, stream, j) for j in range(len(stream))]
    assert last == pytest.approx(results["accuracy_matrix"][-1], abs=1e-9)
    assert last[0] >= 0.9  # the held-in colours are kept...
    assert last[1] >= results["zero_shot"][1] + 0.3  # ...and the new colours were learned
