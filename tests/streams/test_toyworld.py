"""The toy world and its streams: deterministic, pixels and captions agree with the attributes,
prompts are captions, streams have the documented shape."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import streams
from streams.benchmarks.toy import MTIL_ORDER, toy_captions
from streams.toyworld.attributes import (
    COLOURS,
    DOMAINS,
    HELD_OUT,
    POSITIONS,
    PREFIXES,
    TEXTURES,
    held_in,
)
from streams.toyworld.captions import captions, describe, full_caption
from streams.toyworld.dataset import domain_dataset, domain_scenes
from streams.toyworld.render import SHADE, Scene, render, shape_mask


def _pixels(dataset, indices) -> np.ndarray:
    return np.stack([np.asarray(dataset[i][0]) for i in indices])


def test_deterministic_per_seed_and_order_free():
    a = domain_dataset(DOMAINS["counts"], 5, seed=3, split="train")
    b = domain_dataset(DOMAINS["counts"], 5, seed=3, split="train")
    c = domain_dataset(DOMAINS["counts"], 5, seed=4, split="train")
    backwards = _pixels(b, range(len(b) - 1, -1, -1))[::-1]  # reading order changes nothing
    assert np.array_equal(_pixels(a, range(len(a))), backwards)
    assert a.scenes == b.scenes and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(_pixels(a, range(len(a))), _pixels(c, range(len(c))))
    test = domain_dataset(DOMAINS["counts"], 5, seed=3, split="test")
    assert test.scenes != a.scenes and test.glyphs == "test"


def test_labels_name_the_scene_attribute_and_classes_are_balanced():
    for domain in DOMAINS.values():
        scenes, labels = domain_scenes(domain, 4, seed=0, split="train")
        field = {"object": "obj", "colour": "colour", "texture": "texture", "count": "count",
                 "position": "position", "background": "background"}[domain.attribute]
        assert [getattr(s, field) for s in scenes] == [domain.values[i] for i in labels]
        assert np.bincount(labels).tolist() == [4] * len(domain.values)
        for s in scenes:  # the other attributes stay held in
            assert s.colour in (HELD_OUT["colour"] if domain.name == "new-colours"
                                else held_in("colour"))


def _single(obj="square", colour="red", texture="solid", position="left", background="dark",
            seed=0, count=1):
    return Scene(obj, colour, texture, count, position if count == 1 else None, background, seed)


def test_pixels_show_the_colour_count_and_position():
    for seed in range(5):
        for colour, rgb in COLOURS.items():
            img = render(_single(colour=colour, seed=seed)).astype(float)
            obj = img[img.max(-1) > 90]  # dark background (<= 50 + noise): the object is bright
            assert np.abs(obj.mean(0) - rgb).max() <= 15.5  # per-image jitter is at most 15
        for count in (1, 2, 3, 4):
            img = render(_single(count=count, seed=seed, background="light",
                                 colour="blue")).astype(float)
            _, found = ndimage.label(img[..., 2] - img[..., 0] > 80)  # blue against grey
            assert found == count
        for position, side in POSITIONS.items():
            img = render(_single(position=position, seed=seed)).astype(float)
            ys, xs = np.nonzero(img.max(-1) > 90)
            cx, cy = xs.mean(), ys.mean()
            expected = {"left": cx < 12, "right": cx > 19, "top": cy < 12, "bottom": cy > 19}
            assert expected[position], (side, cx, cy)


def test_textures_shade_the_object_and_digits_use_separate_glyph_pools():
    rgb = np.asarray(COLOURS["yellow"], dtype=float)
    for texture in TEXTURES:
        img = render(_single(colour="yellow", texture=texture, background="light",
                             obj="circle")).astype(float)
        shaded = np.all(np.abs(img - rgb * SHADE) < 16, axis=-1).sum()
        assert (shaded == 0) == (texture == "solid")
    digit = _single(obj="digit 3")
    assert not np.array_equal(render(digit, glyphs="train"), render(digit, glyphs="test"))
    mask = shape_mask("circle", 15)
    assert mask.shape == (15, 15) and mask[7, 7] and not mask[0, 0]


def test_prompt_templates_are_captions_that_mention_one_attribute():
    part = {"object": "object", "colour": "colour", "texture": "texture", "count": "count",
            "position": "position", "background": "background"}
    for domain in DOMAINS.values():
        scenes, labels = domain_scenes(domain, 2, seed=1, split="test")
        for scene, label in zip(scenes, labels, strict=True):
            for prefix, template in zip(PREFIXES, domain.templates, strict=True):
                said = describe(scene, {part[domain.attribute]}, prefix)
                assert said == template.format(domain.class_names[label])


def test_captions_mention_exactly_the_scene():
    scene = Scene("triangle", "green", "striped", 2, None, "noisy", 7)
    assert full_caption(scene) == "a photo of two green striped triangles on a noisy background."
    one = Scene("digit 4", "purple", "solid", 1, "top", "dark", 7)
    assert full_caption(one) == "a photo of one purple digit 4 at the top on a dark background."
    assert describe(one, {"texture"}) == "a photo of an object."  # digits have no texture
    many = captions(scene, 20)
    assert many == captions(scene, 20) and many[0] == full_caption(scene) and len(set(many)) > 5
    others = ({*COLOURS} - {"green"}) | ({*TEXTURES} - {"striped"}) | {"one", "three", "four"} \
        | {"dark", "light", "circles", "squares", "left", "top"}
    for text in many:
        assert text.startswith(PREFIXES) and not set(text.rstrip(".").split()) & others, text
    with pytest.raises(ValueError, match="unknown caption parts"):
        describe(scene, {"size"})


def test_streams_are_registered_with_the_documented_shape():
    assert {"toy-mtil", "toy-xtail", "toy-cil"} <= set(streams.available())
    mtil = streams.get("toy-mtil")
    assert mtil.scenario == "task-incremental" and mtil.task_names == MTIL_ORDER
    assert len(mtil) >= 6 and any(DOMAINS[t].held_out for t in mtil.task_names)
    for task in mtil:
        assert len(task.templates) == len(PREFIXES) and task.class_names == DOMAINS[task.name].class_names
    xtail = streams.get("toy-xtail", n_shots=3)
    assert xtail.scenario == "task-agnostic" and len(xtail.eval_label_space(0, None)) == 19
    assert np.bincount(xtail[0].load_train().labels).tolist() == [3] * 6
    cil = streams.get("toy-cil")
    assert cil.scenario == "class-incremental"
    assert cil[0].class_names == ("digit 0", "digit 1") and cil.n_classes == 10
    shapes = streams.get("toy-cil", attribute="shape", n_tasks=3)
    assert len(shapes) == 3 and shapes.n_classes == 9
    with pytest.raises(ValueError, match="unknown toy domains"):
        streams.get("toy-xtail", domains=["colours"])
    assert mtil[0].key != streams.get("toy-mtil", seed=1)[0].key


def test_caption_tasks_pair_the_mtil_images_with_their_captions():
    tasks = toy_captions(n_train=3, n_test=2, n_captions=4)
    mtil = streams.get("toy-mtil", n_train=3, n_test=2)
    assert [t.name for t in tasks] == list(mtil.task_names)
    image, texts = tasks[1].load_test()[0]
    ref_image, _ = mtil[1].load_test()[0]
    assert isinstance(image, Image.Image) and np.array_equal(np.asarray(image), np.asarray(ref_image))
    assert len(texts) == 4 and all(isinstance(t, str) and t.endswith(".") for t in texts)
    assert tasks[2].metadata["held_out"] and tasks[2].metadata["concepts"] == list(HELD_OUT["colour"])
