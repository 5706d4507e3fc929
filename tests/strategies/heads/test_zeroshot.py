"""The ``zeroshot`` strategy: CLIP's text head over the runner's label space."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

import strategies
import streams
from cl.cli import main
from cl.core.strategy import Context
from cl.models.backbones import create_backbone
from cl.models.features import FeatureCache
from cl.models.prompts import zero_shot_head

STREAM = streams.get("split-digits")


@pytest.fixture(scope="module")
def tiny():
    return create_backbone("cl-tiny-vit")


def _ctx(backbone, t: int = 0) -> Context:
    return Context(
        task_index=t, task=STREAM[t], stream=STREAM, label_space=STREAM.train_label_space(t),
        backbone=backbone, device=torch.device("cpu"), seed=0, generator=torch.Generator(),
        logger=logging.getLogger("test"), record=lambda key, value: None,
    )


def test_logits_are_scaled_cosines_with_each_class_templates(tiny) -> None:
    strategy = strategies.get("zeroshot")
    space = STREAM.eval_label_space(2, 3)  # class-incremental: classes of tasks 0..3
    x = torch.randn(5, 32)
    logits = strategy.predict(x, space, _ctx(tiny))
    head = zero_shot_head(tiny, space.class_names, space.templates, cache=False)
    assert logits.shape == (5, 8)
    torch.testing.assert_close(logits, 100 * torch.nn.functional.normalize(x, dim=1) @ head.T)
    assert space.templates[0] == STREAM[0].templates  # the digit stream's own prompts


def test_an_image_matching_a_class_prompt_is_classified_as_that_class(tiny) -> None:
    space = STREAM.task_label_space(range(5))
    head = zero_shot_head(tiny, space.class_names, space.templates)
    logits = strategies.get("zeroshot", logit_scale=1.0).predict(3.0 * head, space, _ctx(tiny))
    assert logits.argmax(dim=1).tolist() == list(range(10))
    torch.testing.assert_close(logits.diagonal(), torch.ones(10))


def test_pixels_backbone_is_refused_with_a_clear_error(tmp_path, capsys) -> None:
    pixels = create_backbone("pixels")
    with pytest.raises(ValueError, match="'pixels' has no text tower|needs a text tower"):
        strategies.get("zeroshot").predict(torch.ones(2, 64), STREAM.task_label_space([0]),
                                           _ctx(pixels))
    code = main(["run", "--stream", "split-digits", "--backbone", "pixels", "--strategy",
                 "zeroshot", "--out", str(tmp_path / "run"), "--no-progress"])
    assert code != 0
    assert "needs a text tower, but backbone 'pixels' has none" in capsys.readouterr().err


def test_bad_options_and_inputs(tiny) -> None:
    with pytest.raises(ValueError, match="logit_scale must be positive"):
        strategies.get("zeroshot", logit_scale=0.0)
    with pytest.raises(ValueError, match=r"features of shape \(N, 32\)"):
        strategies.get("zeroshot").predict(torch.ones(2, 3, 32, 32), STREAM.task_label_space([0]),
                                           _ctx(tiny))


def test_cli_run_end_to_end_offline(tmp_path) -> None:
    cache = tmp_path / "cache"
    args = ["run", "--stream", "split-digits", "--backbone", "cl-tiny-vit", "--strategy",
            "zeroshot", "--cache-dir", str(cache), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["strategy"] == "zeroshot" and results["backbone"] == "cl-tiny-vit"
    A = np.array(results["accuracy_matrix"], dtype=float)
    assert A.shape == (5, 5) and ((A >= 0) & (A <= 1)).all()
    # training-free: after training task t, the tasks seen so far score as on the
    # zero-shot row's label spaces once those coincide (task t evaluated over tasks 0..t)
    for t in range(5):
        assert A[t, t] == pytest.approx(results["zero_shot"][t])
    entries = FeatureCache(cache).entries()
    assert {e["key"]["split"] for e in entries} == {"train", "test"} and len(entries) == 10
    assert main([*args, "--out", str(tmp_path / "b")]) == 0  # second run: through the cache
    again = json.loads((tmp_path / "b" / "results.json").read_text())
    assert again["accuracy_matrix"] == results["accuracy_matrix"]
    assert len(FeatureCache(cache).entries()) == 10
