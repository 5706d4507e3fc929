"""LingoCL's language-guided head (Ni et al., CVPR 2024) term by term against independent
formulas, with real encoders (toy-clip's text tower; a tiny BERT saved to disk), and the
``finetune`` strategy trained with it through ``cl run`` (the head never changes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import streams
from cl.cli import main
from cl.models.backbones import create_backbone
from cl.models.language_head import (
    TEMPLATE,
    LanguageHead,
    classifier,
    language_encoder,
    language_targets,
)

NAMES = ["digit 0", "digit 1", "red", "circle"]


@pytest.fixture(scope="module")
def toy_clip():
    return create_backbone("toy-clip")


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.sqrt((a * a).sum(-1, keepdims=True))


def test_clip_targets_are_the_normalised_text_embeddings_of_the_prompted_names(toy_clip):
    targets = language_targets(NAMES, language_encoder("clip", toy_clip))
    tokens = toy_clip.tokenizer([f"a photo of a {n}." for n in NAMES])
    with torch.no_grad():
        raw = toy_clip.model.encode_text(tokens).double().numpy()
    np.testing.assert_allclose(targets.numpy(), _unit(raw), rtol=0, atol=1e-6)
    assert TEMPLATE == "a photo of a {}."
    # different names give different targets; one name always the same target
    assert not torch.allclose(targets[0], targets[1])
    again = language_targets(NAMES[:1], language_encoder("clip", toy_clip))
    torch.testing.assert_close(again[0], targets[0], rtol=0, atol=1e-6)


def test_head_logits_are_cosine_of_the_projection_and_the_targets_over_temperature():
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(5, 6, generator=g)
    head = LanguageHead(targets, in_features=3, temperature=0.07)
    h = torch.randn(4, 3, generator=g)
    logits = head(h).detach().double().numpy()
    W, b = head.projection.weight.detach().double().numpy(), head.projection.bias.detach().double()
    z = h.double().numpy() @ W.T + b.numpy()                         # W_p h
    t = targets.double().numpy()
    cos = (z @ t.T) / np.outer(np.linalg.norm(z, axis=1), np.linalg.norm(t, axis=1))
    np.testing.assert_allclose(logits, cos / 0.07, rtol=1e-5, atol=1e-5)
    # the targets are a buffer: no gradient, not among the parameters
    assert "targets" in dict(head.named_buffers())
    assert all(p is not head.targets for p in head.parameters())
    head(h).sum().backward()
    assert head.targets.grad is None and head.projection.weight.grad is not None


def test_cross_entropy_with_the_head_is_the_softmax_over_cosines():
    g = torch.Generator().manual_seed(1)
    head = LanguageHead(torch.randn(3, 4, generator=g), in_features=2, temperature=0.5)
    h, y = torch.randn(6, 2, generator=g), torch.tensor([0, 1, 2, 2, 1, 0])
    loss = torch.nn.functional.cross_entropy(head(h), y).item()
    z = torch.nn.functional.normalize(head.projection(h), dim=-1).detach().double().numpy()
    s = z @ head.targets.double().numpy().T / 0.5
    p = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.log(p[np.arange(6), y.numpy()]).mean(), rel=1e-6)


def test_transformers_encoder_from_a_local_directory_is_masked_mean_pooling(tmp_path):
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", ".", "digit",
             "0", "1", "red", "circle"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizer(str(tmp_path / "vocab.txt"))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64)
    model = transformers.BertModel(config).eval()
    save = tmp_path / "tiny-bert"
    tokenizer.save_pretrained(save)
    model.save_pretrained(save)
    targets = language_targets(NAMES, language_encoder(str(save)))
    assert targets.shape == (4, 32)
    for i, name in enumerate(NAMES):  # one sentence at a time: no padding, plain mean
        batch = tokenizer([f"a photo of a {name}."], return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state[0].double().numpy()
        np.testing.assert_allclose(targets[i].numpy(), _unit(hidden.mean(0)), rtol=0, atol=1e-5)


def test_classifier_keeps_the_one_hot_layout_and_swaps_only_the_last_layer():
    targets = torch.randn(5, 6)
    torch.manual_seed(3)
    one_hot = classifier(8, 5, 16)
    torch.manual_seed(3)
    language = classifier(8, 5, 16, targets=targets)
    assert isinstance(one_hot[2], torch.nn.Linear) and isinstance(language[2], LanguageHead)
    assert torch.equal(one_hot[0].weight, language[0].weight)  # same body, same RNG draws
    assert isinstance(classifier(8, 5, 0, targets=torch.randn(5, 6)), LanguageHead)
    with pytest.raises(ValueError, match="4 targets for 5 classes"):
        classifier(8, 5, 0, targets=torch.randn(4, 6))


def test_bad_inputs_name_the_option_and_the_fix():
    from cl.core.strategy import Strategy  # noqa: F401  (strategies import the core)
    from strategies.finetune import Finetune

    with pytest.raises(ValueError, match="'linear', 'language'"):
        Finetune(head="cosine")
    with pytest.raises(ValueError, match="head_temperature"):
        Finetune(head="language", head_temperature=0.0)
    with pytest.raises(ValueError, match="has none"):
        language_encoder("clip", create_backbone("pixels"))
    with pytest.raises(ValueError, match="could not be loaded"):
        language_encoder("/nonexistent/dir/for/an/encoder")
    with pytest.raises(ValueError, match="'{}'"):
        language_targets(["a"], lambda texts: torch.zeros(1, 2), template="no slot")


def test_finetune_with_language_head_runs_offline_and_never_changes_the_head(toy_clip, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--strategy", "finetune", "--stream", "split-digits", "--backbone",
            "toy-clip", "--set", "strategy.head=language", "--set", "strategy.epochs=1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text())["completed_tasks"] == 5
    states = [torch.load(out / "checkpoints" / f"task-{t:04d}.pt", weights_only=False)["strategy"]
              for t in (3, 4)]
    # before training: the targets of every class of the stream, from toy-clip's text tower
    stream = streams.get("split-digits")
    names = [n for task in stream for n in task.class_names]
    before = language_targets(names, language_encoder("clip", toy_clip))
    for state in states:
        assert torch.equal(state["model"]["2.targets"], before)  # bit-identical
        assert torch.equal(state["targets"], before)
    assert before.shape[0] == stream.n_classes  # unseen classes' targets exist from the first task on
    assert not torch.equal(states[0]["model"]["2.projection.weight"],
                           states[1]["model"]["2.projection.weight"])  # the rest trained


@pytest.mark.slow  # avalanche's import alone is seconds
def test_avalanche_strategies_take_the_language_head_and_keep_it_frozen(toy_clip, tmp_path):
    import strategies
    from cl.core.runner import Runner
    from cl.models.language_head import stream_targets

    stream = streams.get("split-digits", n_tasks=2)
    strategy = strategies.get("avalanche:Naive", head="language", epochs=1, hidden=16)
    Runner(stream, strategy, toy_clip, out_dir=tmp_path / "run", seed=0, progress=False).run()
    head = strategy.model.net[2]
    assert isinstance(head, LanguageHead)
    torch.testing.assert_close(head.targets, stream_targets(stream, "clip", toy_clip),
                               rtol=0, atol=0)
    assert strategy.model.net[0].weight.requires_grad and not head.targets.requires_grad
    with pytest.raises(ValueError, match="'linear', 'language'"):
        strategies.get("avalanche:Naive", head="onehot")
