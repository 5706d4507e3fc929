"""Scenes of the toy world and their pixels: 32×32 RGB, deterministic per scene seed.

A :class:`Scene` names every attribute (:mod:`.attributes`) and carries its own
``seed``; :func:`render` draws it with ``numpy.random.default_rng(seed)`` for
everything the attributes leave open (object size and exact place, colour
jitter, texture phase, background noise, which handwritten glyph), so a scene
always renders to the same image, in any order, in any process.

Layout: one object is 13–16 px wide, centred near the middle of the edge its
position names; 2–4 objects are 9–11 px wide, one in each of that many
distinct quadrants. Digit glyphs come from scikit-learn's 1,797 ``load_digits``
images, split by index parity into a ``"train"`` pool (even) and a ``"test"``
pool (odd), so test images never reuse a training glyph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
from PIL import Image

from streams.toyworld.attributes import COLOURS, COUNTS, DIGITS, SHAPES, is_digit

SIZE = 32
SHADE = 0.35  # texture marks are the object's colour times SHADE
Glyphs = Literal["train", "test"]
_BACKGROUND_LEVEL = {"dark": (15.0, 50.0), "light": (185.0, 225.0)}
_NOISY_MEAN, _NOISY_STD, _PIXEL_NOISE, _COLOUR_JITTER = 128.0, 40.0, 3.0, 15.0
_ROWS, _COLUMNS = np.mgrid[0:SIZE, 0:SIZE]


@dataclass(frozen=True)
class Scene:
    """Everything that defines one image.

    Attributes
    ----------
    obj : str
        A shape name or a digit object ``"digit D"``.
    colour, texture, background : str
    count : int
        1 to 4 identical objects.
    position : str or None
        Edge of a single object (``None`` when ``count > 1``).
    seed : int
        Seed of the rendering details.
    """

    obj: str
    colour: str
    texture: str
    count: int
    position: str | None
    background: str
    seed: int


def random_scene(
    rng: np.random.Generator,
    *,
    objects: Sequence[str],
    colours: Sequence[str],
    textures: Sequence[str],
    counts: Sequence[int],
    positions: Sequence[str],
    backgrounds: Sequence[str],
    exclude: Sequence[tuple[str, str]] = (),
) -> Scene:
    """One scene with each attribute drawn uniformly from the values given.

    Digits are always ``"solid"``; ``position`` is ``None`` for several objects;
    (colour, object) pairs in ``exclude`` are redrawn (``ValueError`` if every
    pair allowed is excluded).
    """
    allowed = {(c, o) for c in colours for o in objects} - set(exclude)
    if not allowed:
        raise ValueError(f"every (colour, object) pair of {list(colours)} x {list(objects)} is "
                         "excluded; allow at least one.")
    while True:
        obj = objects[int(rng.integers(len(objects)))]
        colour = colours[int(rng.integers(len(colours)))]
        if (colour, obj) in allowed:
            break
    texture = "solid" if is_digit(obj) else textures[int(rng.integers(len(textures)))]
    count = int(counts[int(rng.integers(len(counts)))])
    position = positions[int(rng.integers(len(positions)))] if count == 1 else None
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    return Scene(obj, colour, texture, count, position, background,
                 int(rng.integers(0, 2**63 - 1)))


def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (u, v) in (-1, 1), v pointing down, each (size, size)."""
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    return np.meshgrid(c, c)


@cache
def shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean (size, size) mask of a shape (read-only, cached)."""
    u, v = _unit_grid(size)
    r2 = u * u + v * v
    if shape == "circle":
        mask = r2 <= 0.9**2
    elif shape == "ring":
        mask = (r2 <= 0.95**2) & (r2 >= 0.5**2)
    elif shape == "square":
        mask = np.maximum(abs(u), abs(v)) <= 0.75
    elif shape == "diamond":
        mask = abs(u) + abs(v) <= 0.95
    elif shape == "triangle":
        mask = (v <= 0.75) & (abs(u) <= 0.58 * (v + 0.85))
    elif shape == "cross":
        mask = ((abs(u) <= 0.3) & (abs(v) <= 0.92)) | ((abs(v) <= 0.3) & (abs(u) <= 0.92))
    elif shape == "star":  # radius interpolated between 5 outer and 5 inner vertices
        theta = np.mod(np.arctan2(v, u) + np.pi / 2, 2 * np.pi / 5)
        t = np.abs(theta / (np.pi / 5) - 1.0)
        mask = np.sqrt(r2) <= 0.4 + (0.98 - 0.4) * t
    elif shape == "heart":  # (x² + y² − 1)³ − x²y³ <= 0
        x, y = 1.2 * u, -1.15 * v + 0.15
        mask = (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0
    elif shape == "crescent":
        mask = (r2 <= 0.92**2) & ((u - 0.42) ** 2 + (v + 0.12) ** 2 >= 0.7**2)
    else:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}.")
    mask.setflags(write=False)
    return mask


@cache
def glyph_pool(digit: str, glyphs: Glyphs) -> np.ndarray:
    """Handwritten images (M, 8, 8) float in [0, 1] of one digit, from one pool (read-only)."""
    from sklearn.datasets import load_digits

    if digit not in DIGITS or glyphs not in ("train", "test"):
        raise ValueError(f"digit must be one of {DIGITS} and glyphs 'train' or 'test', got "
                         f"{digit!r}, {glyphs!r}.")
    data = load_digits()
    index = np.flatnonzero((data.target == int(digit))
                           & (np.arange(len(data.target)) % 2 == (glyphs == "test")))
    pool = data.images[index] / 16.0
    pool.setflags(write=False)
    return pool


@cache
def _glyph(digit: str, glyphs: Glyphs, index: int, size: int) -> np.ndarray:
    image = Image.fromarray(np.uint8(np.round(glyph_pool(digit, glyphs)[index] * 255)))
    mask = np.asarray(image.resize((size, size), Image.BILINEAR)) >= 96
    mask.setflags(write=False)
    return mask


def glyph_mask(digit: str, size: int, rng: np.random.Generator, glyphs: Glyphs) -> np.ndarray:
    """Boolean (size, size) mask of a random handwritten ``digit`` from pool ``glyphs``
    (bilinear upscaling thresholded at 96/255; read-only, cached)."""
    return _glyph(digit, glyphs, int(rng.integers(len(glyph_pool(digit, glyphs)))), size)


def _centres(scene: Scene, size: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    """(x, y) pixel centres of the scene's objects."""
    if scene.count == 1:
        near, far = size / 2 + 1.0, SIZE - size / 2 - 1.0
        edge = rng.uniform(0.0, 2.0)
        middle = rng.uniform(SIZE / 2 - 4.0, SIZE / 2 + 4.0)
        return [{"left": (near + edge, middle), "right": (far - edge, middle),
                 "top": (middle, near + edge), "bottom": (middle, far - edge)}[scene.position]]
    quadrants = rng.choice(4, size=scene.count, replace=False)
    return [(8.0 + 16.0 * (q % 2) + rng.uniform(-1.5, 1.5), 8.0 + 16.0 * (q // 2)
             + rng.uniform(-1.5, 1.5)) for q in quadrants]


def _texture(texture: str, rng: np.random.Generator) -> np.ndarray:
    """Boolean (SIZE, SIZE) map of the texture's dark marks, with a random phase."""
    y, x = _ROWS, _COLUMNS
    dx, dy = (int(p) for p in rng.integers(0, 4, size=2))
    if texture == "solid":
        return np.zeros((SIZE, SIZE), dtype=bool)
    if texture == "striped":
        return ((x + y + dx) // 2) % 2 == 1
    if texture == "dotted":
        return ((x + dx) % 3 == 0) & ((y + dy) % 3 == 0)
    if texture == "checkered":
        return ((x + dx) // 2 + (y + dy) // 2) % 2 == 1
    raise ValueError(f"unknown texture {texture!r}.")


def _background(background: str, rng: np.random.Generator) -> np.ndarray:
    if background == "noisy":
        return rng.normal(_NOISY_MEAN, _NOISY_STD, (SIZE, SIZE, 3))
    if background not in _BACKGROUND_LEVEL:
        raise ValueError(f"unknown background {background!r}.")
    level = rng.uniform(*_BACKGROUND_LEVEL[background])
    return level + rng.normal(0.0, _PIXEL_NOISE, (SIZE, SIZE, 3))


def render(scene: Scene, *, glyphs: Glyphs = "train") -> np.ndarray:
    """The scene's image, (32, 32, 3) uint8, a pure function of ``scene`` and ``glyphs``.

    Raises
    ------
    ValueError
        An attribute value the world does not define, or a count outside 1–4.
    """
    if scene.count not in COUNTS or (scene.count == 1) != (scene.position is not None):
        raise ValueError(f"scene needs a count in 1-4 and a position exactly when count is 1, "
                         f"got count={scene.count}, position={scene.position!r}.")
    if scene.colour not in COLOURS:
        raise ValueError(f"unknown colour {scene.colour!r}; valid: {', '.join(COLOURS)}.")
    rng = np.random.default_rng(scene.seed)
    image = _background(scene.background, rng)
    colour = np.asarray(COLOURS[scene.colour], dtype=np.float64)
    colour = colour + rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, 3)
    size = int(rng.integers(13, 17) if scene.count == 1 else rng.integers(9, 12))
    marks = _texture(scene.texture, rng)
    for cx, cy in _centres(scene, size, rng):
        mask = (glyph_mask(scene.obj[len("digit "):], size, rng, glyphs) if is_digit(scene.obj)
                else shape_mask(scene.obj, size))
        x0 = min(max(round(cx - size / 2), 0), SIZE - size)
        y0 = min(max(round(cy - size / 2), 0), SIZE - size)
        window = image[y0:y0 + size, x0:x0 + size]
        shade = marks[y0:y0 + size, x0:x0 + size]
        window[mask & ~shade] = colour
        window[mask & shade] = colour * SHADE
    return np.clip(np.round(image), 0, 255).astype(np.uint8)
