"""Zero-shot heads against open_clip's own build_zero_shot_classifier, on a real tiny model."""

from __future__ import annotations

import open_clip
import pytest
import torch

from cl.models.backbones import OpenCLIPBackbone, create_backbone
from cl.models.prompts import clear_head_cache, template_set, zero_shot_head

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
TEMPLATES = ["a photo of the digit {}.", "a handwritten {}.", "{}"]


@pytest.fixture(scope="module")
def tiny() -> OpenCLIPBackbone:
    return create_backbone("cl-tiny-vit")


class CountingTexts:
    """Counts texts sent through ``encode_texts``."""

    def __init__(self, backbone: OpenCLIPBackbone) -> None:
        self.texts: list[str] = []
        real = backbone.encode_texts

        def counted(texts: list[str]) -> torch.Tensor:
            self.texts.extend(texts)
            return real(texts)

        backbone.encode_texts = counted  # type: ignore[method-assign]


def test_head_equals_open_clip_build_zero_shot_classifier(tiny) -> None:
    head = zero_shot_head(tiny, NAMES, TEMPLATES, cache=False)
    ref = open_clip.build_zero_shot_classifier(
        tiny.model, tiny.tokenizer, NAMES, TEMPLATES, num_classes_per_batch=4
    )
    assert head.shape == (11, 32)
    torch.testing.assert_close(head, ref.T, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head.norm(dim=1), torch.ones(11))


def test_hand_computed_template_average(tiny) -> None:
    with torch.no_grad():
        a, b = tiny.encode_texts(["a photo of a cat.", "a drawing of a cat."])
    mean = (a / a.norm() + b / b.norm()) / 2
    head = zero_shot_head(tiny, ["cat"], ["a photo of a {}.", "a drawing of a {}."], cache=False)
    torch.testing.assert_close(head[0], mean / mean.norm())


def test_per_class_templates(tiny) -> None:
    head = zero_shot_head(tiny, ["cat", "7"], [("a photo of a {}.",), ("the digit {}.", "{}")],
                          cache=False)
    torch.testing.assert_close(head[0], zero_shot_head(tiny, ["cat"], ["a photo of a {}."])[0])
    torch.testing.assert_close(head[1], zero_shot_head(tiny, ["7"], ["the digit {}.", "{}"])[0])


def test_rows_are_cached_per_fingerprint_name_and_templates(tiny) -> None:
    clear_head_cache()
    counter = CountingTexts(tiny)
    first = zero_shot_head(tiny, NAMES[:2], TEMPLATES)
    assert len(counter.texts) == 6
    grown = zero_shot_head(tiny, NAMES[:3], TEMPLATES)  # only the new class is embedded
    assert counter.texts[6:] == [t.format("two") for t in TEMPLATES]
    assert torch.equal(grown[:2], first)
    zero_shot_head(tiny, NAMES[:3], TEMPLATES[:1])  # other templates: new rows
    assert len(counter.texts) == 12
    changed = create_backbone("cl-tiny-vit")
    with torch.no_grad():
        changed.model.text_projection.mul_(-1.0)
    changed.refresh_fingerprint()
    flipped = zero_shot_head(changed, NAMES[:2], TEMPLATES)  # new weights: not served stale
    torch.testing.assert_close(flipped, -first)


def test_backbone_without_text_tower_is_refused() -> None:
    with pytest.raises(ValueError, match="'pixels' has no text tower"):
        zero_shot_head(create_backbone("pixels"), ["a"], ["{}"])


@pytest.mark.parametrize(
    ("names", "templates", "error", "match"),
    [
        ([], ["{}"], ValueError, "non-empty"),
        (["a"], [], TypeError, "non-empty sequence"),
        (["a"], "a photo of a {}.", TypeError, "sequence of format strings"),
        (["a"], ["a photo"], ValueError, "no '\\{\\}' slot"),
        (["a", "b"], [["{}"], ["{}"], ["{}"]], ValueError, "3 template lists for 2 classes"),
    ],
)
def test_bad_input(tiny, names, templates, error, match) -> None:
    with pytest.raises(error, match=match):
        zero_shot_head(tiny, names, templates)


def test_template_sets_are_format_strings() -> None:
    clip80 = template_set("clip-imagenet")
    assert len(clip80) == 80 and all(t.count("{}") == 1 for t in clip80)
    assert "a photo of a {}." in clip80
    assert set(template_set("clip-imagenet-simple")) <= set(clip80)
    with pytest.raises(ValueError, match="valid sets: default"):
        template_set("imagenet-81")
