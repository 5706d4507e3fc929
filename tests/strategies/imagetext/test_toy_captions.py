"""toy-captions with toy-clip: the offline image-text stream is listed, each image-text strategy
runs on it from the command line (the config of the demonstration), and the pretrained
toy-clip retrieves the held-in domains' captions far above chance, the held-out ones less."""

import json
from math import comb

import numpy as np
import pytest
import torch

import streams
from cl import create_backbone, metrics
from cl.cli import main

CONFIG = "experiments/imagetext/toy-captions.toml"
RECALL_KEYS = {f"{d}_recall@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)} | {
    "i2t_mean_recall", "t2i_mean_recall", "mean_recall"}


def test_cl_list_streams_shows_the_offline_and_the_protocol_image_text_streams(capsys):
    assert main(["list", "streams", "--format", "json"]) == 0
    rows = {e["name"]: json.dumps(e) for e in json.loads(capsys.readouterr().out)}
    assert "offline" in rows["toy-captions"] and "n_captions" in rows["toy-captions"]
    assert "DATA_ROOT/coco" in rows["coco-flickr"] and "DATA_ROOT/flickr30k" in rows["coco-flickr"]
    assert "DATA_ROOT/p9d" in rows["p9d"]


@pytest.mark.parametrize("name", ["contrastive-ft", *(pytest.param(n, marks=pytest.mark.slow)
                                                       for n in ("er-contrastive", "mod-x", "ctp"))])
def test_each_strategy_runs_on_toy_captions_from_the_command_line(name, tmp_path):
    """About 10 s a run (training, three evaluation rows, the report's figures): the baseline
    runs by default, the other three with ``-m slow`` (all four run on a generated stream in
    test_strategies.py)."""
    out = tmp_path / name
    argv = ["run", "--config", CONFIG, "--strategy", name, "--set", "strategy.iterations=10",
            "--set", "strategy.batch_size=8", "--set", 'stream.domains=["colours", "new-colours"]',
            "--set", "stream.n_train=3", "--set", "stream.n_test=2", "--set", "stream.n_captions=2",
            "--out", str(out), "--no-progress"]
    if name == "ctp":
        argv += ["--set", "strategy.queue_size=16"]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["strategy"] == name and res["backbone"] == "toy-clip"
    assert res["tasks"] == ["colours", "new-colours"] and res["score"] == "mean_recall"
    assert RECALL_KEYS <= set(res["scores"]) and RECALL_KEYS <= set(res["score_metrics"])
    for key in RECALL_KEYS:
        matrix = np.array(res["scores"][key], dtype=float)
        assert matrix.shape == (2, 2) and np.all((matrix >= 0) & (matrix <= 1)), key
    assert [r["iterations"] for r in res["records"]] == [10, 10]
    assert [c["examples_seen"] for c in res["compute"]] == [80, 80]
    assert res["accuracy_matrix"] == res["scores"]["mean_recall"]


def _chance_mean_recall(n_images: int, captions_per_image: int) -> float:
    """Expected mean recall of a random ranking: i2t R@K = 1 − C(G − m, K) / C(G, K) with m
    positives among G captions; t2i R@K = K / N."""
    g, m = n_images * captions_per_image, captions_per_image
    i2t = [1 - comb(g - m, k) / comb(g, k) for k in (1, 5, 10)]
    t2i = [k / n_images for k in (1, 5, 10)]
    return (np.mean(i2t) + np.mean(t2i)) / 2


def test_toy_clip_retrieves_held_in_domains_far_above_chance_and_held_out_ones_less():
    backbone = create_backbone("toy-clip")
    stream = streams.get("toy-captions", n_test=10, n_captions=5)
    model = backbone.model.eval()
    scores, chance = {}, {}
    for task in stream:
        data = task.load_test().with_transform(backbone.preprocess)
        with torch.no_grad():
            images = model.encode_image(torch.stack([data[i][0] for i in range(len(data))]),
                                        normalize=True)
            texts = model.encode_text(backbone.tokenizer(list(data.caption_list)), normalize=True)
        recall = metrics.image_text_recall((images @ texts.T).numpy(), data.caption_to_image)
        scores[task.name] = recall["mean_recall"]
        chance[task.name] = _chance_mean_recall(len(data), 5)
        assert task.metadata["held_out"] is task.name.startswith("new-")
    held_in, held_out = ("colours", "shapes"), ("new-colours", "new-shapes")
    for name in held_in:
        assert scores[name] > 0.7 and scores[name] > 5 * chance[name], (name, scores, chance)
    assert min(scores[n] for n in held_in) > max(scores[n] for n in held_out) + 0.05, scores
