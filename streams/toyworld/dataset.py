"""Torch datasets of the toy world: (image, label) per domain, and (image, captions).

Images are rendered when an item is read (:func:`.render.render`, a pure
function of the scene), so a dataset is a list of :class:`~.render.Scene` and
costs nothing to define; labels are known without rendering (``targets``).
Every scene list is drawn from ``numpy.random.default_rng([seed, domain id,
split id])``: the same arguments give the same images on every machine.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from streams.toyworld.attributes import (
    BACKGROUNDS,
    POSITIONS,
    TEXTURES,
    Domain,
    held_in,
)
from streams.toyworld.captions import captions
from streams.toyworld.render import Glyphs, Scene, random_scene, render

Output = Literal["pil", "tensor"]
SPLITS: tuple[str, ...] = ("train", "test")


def _image(scene: Scene, glyphs: Glyphs, output: Output) -> Image.Image | torch.Tensor:
    pixels = render(scene, glyphs=glyphs)
    if output == "tensor":
        return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
    return Image.fromarray(pixels)


def _check_output(output: str) -> None:
    if output not in ("pil", "tensor"):
        raise ValueError(f"output must be 'pil' or 'tensor', got {output!r}.")


class SceneDataset(Dataset):
    """Labelled scenes: yields ``(image, label)``.

    Parameters
    ----------
    scenes : sequence of Scene, length N
    labels : array-like of int, shape (N,)
    glyphs : {"train", "test"}
        Pool of handwritten digit glyphs the images draw from.
    output : {"pil", "tensor"}
        A 32×32 RGB PIL image, or a float tensor (3, 32, 32) in [0, 1].
    """

    def __init__(self, scenes: Sequence[Scene], labels: Sequence[int] | np.ndarray, *,
                 glyphs: Glyphs = "train", output: Output = "pil") -> None:
        if len(scenes) != len(labels):
            raise ValueError(f"{len(scenes)} scenes but {len(labels)} labels.")
        _check_output(output)
        self.scenes = tuple(scenes)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.glyphs, self.output = glyphs, output

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> tuple[Image.Image | torch.Tensor, int]:
        return _image(self.scenes[index], self.glyphs, self.output), int(self.labels[index])


class CaptionDataset(Dataset):
    """Scenes with captions: yields ``(image, [caption, ...])``.

    Parameters
    ----------
    scenes : sequence of Scene
    n_captions : int
        Captions per image: the full caption, then random partial ones
        (:func:`.captions.captions`).
    glyphs, output
        As for :class:`SceneDataset`.
    """

    def __init__(self, scenes: Sequence[Scene], *, n_captions: int = 5,
                 glyphs: Glyphs = "train", output: Output = "pil") -> None:
        if n_captions < 1:
            raise ValueError(f"n_captions must be at least 1, got {n_captions}.")
        _check_output(output)
        self.scenes = tuple(scenes)
        self.n_captions, self.glyphs, self.output = n_captions, glyphs, output

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> tuple[Image.Image | torch.Tensor, list[str]]:
        scene = self.scenes[index]
        return _image(scene, self.glyphs, self.output), captions(scene, self.n_captions)


def domain_rng(seed: int, domain: str, split: str) -> np.random.Generator:
    """The generator of one domain split: ``default_rng([seed, crc32(domain), split id])``."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    return np.random.default_rng([seed, zlib.crc32(domain.encode()), SPLITS.index(split)])


def domain_scenes(domain: Domain, n_per_class: int, *, seed: int,
                  split: str) -> tuple[list[Scene], np.ndarray]:
    """``n_per_class`` scenes of every class of ``domain``, in a seeded random order.

    Returns
    -------
    scenes : list of Scene, length C·n_per_class
    labels : np.ndarray, shape (C·n_per_class,), int64
        Index of each scene's value in ``domain.values``.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}.")
    rng = domain_rng(seed, domain.name, split)
    choices = {"objects": domain.objects, "colours": held_in("colour"), "textures": TEXTURES,
               "counts": domain.counts, "positions": tuple(POSITIONS),
               "backgrounds": BACKGROUNDS}
    key = {"object": "objects", "colour": "colours", "texture": "textures", "count": "counts",
           "position": "positions", "background": "backgrounds"}[domain.attribute]
    labels = rng.permutation(np.repeat(np.arange(len(domain.values)), n_per_class))
    scenes = [random_scene(rng, **(choices | {key: (domain.values[int(c)],)})) for c in labels]
    return scenes, labels.astype(np.int64)


def domain_dataset(domain: Domain, n_per_class: int, *, seed: int, split: str,
                   output: Output = "pil") -> SceneDataset:
    """The labelled dataset of one domain split (test splits draw from the test glyphs)."""
    scenes, labels = domain_scenes(domain, n_per_class, seed=seed, split=split)
    return SceneDataset(scenes, labels, glyphs="test" if split == "test" else "train",
                        output=output)
