"""Captions of toy-world scenes: one small grammar, partial mentions like real alt-text.

A caption is ``PREFIX [COUNT | a/an] [COLOUR] [TEXTURE] NOUN [POSITION] [on a BG
background].``, for example ``"a photo of two red striped squares on a dark
background."``. Each attribute is mentioned or not (``mention`` probability, at
least one always); an unmentioned object reads ``object``/``objects``, an
unmentioned count of one reads ``a``/``an``. Texture is never said of digits
(they are always solid) and position only of a single object. Prompt templates
of the domains (:data:`.attributes.DOMAINS`) are exactly the captions that
mention one attribute, so zero-shot prompts are in the caption distribution.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from streams.toyworld.attributes import COUNTS, POSITIONS, PREFIXES, is_digit, noun
from streams.toyworld.render import Scene

#: the parts a caption can mention
PARTS: tuple[str, ...] = ("count", "colour", "texture", "object", "position", "background")


def _mentionable(scene: Scene) -> tuple[str, ...]:
    return tuple(p for p in PARTS
                 if not (p == "texture" and is_digit(scene.obj))
                 and not (p == "position" and scene.position is None))


def describe(scene: Scene, mentioned: set[str] | frozenset[str], prefix: str = PREFIXES[0]) -> str:
    """The caption of ``scene`` that mentions exactly the parts in ``mentioned``.

    Parameters
    ----------
    scene : Scene
    mentioned : set of str
        Any of ``count, colour, texture, object, position, background`` (parts that
        do not apply to the scene, such as the texture of a digit, are ignored).
    prefix : str
        The opening, one of :data:`.attributes.PREFIXES` in the world's own captions.
    """
    unknown = set(mentioned) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown caption parts {sorted(unknown)}; valid: {', '.join(PARTS)}.")
    said = set(mentioned) & set(_mentionable(scene))
    plural = scene.count > 1
    words: list[str] = []
    if "colour" in said:
        words.append(scene.colour)
    if "texture" in said:
        words.append(scene.texture)
    words.append(noun(scene.obj, plural) if "object" in said else
                 ("objects" if plural else "object"))
    if "count" in said:
        words.insert(0, COUNTS[scene.count])
    elif not plural:
        words.insert(0, "an" if words[0][0] in "aeiou" else "a")
    if "position" in said:
        words.append(POSITIONS[scene.position])
    if "background" in said:
        words.append(f"on a {scene.background} background")
    return f"{prefix} {' '.join(words)}."


def full_caption(scene: Scene, prefix: str = PREFIXES[0]) -> str:
    """The caption that mentions every attribute of ``scene``."""
    return describe(scene, set(PARTS), prefix)


def random_caption(scene: Scene, rng: np.random.Generator, *,
                   mention: float | Mapping[str, float] = 0.5) -> str:
    """A caption mentioning each applicable part with probability ``mention`` (at least one part),
    after a random prefix.

    Parameters
    ----------
    scene : Scene
    rng : numpy Generator
    mention : float or mapping of part -> float
        One probability for every part, or one per part (every part named).
    """
    probs = dict.fromkeys(PARTS, mention) if not isinstance(mention, Mapping) else dict(mention)
    if set(probs) != set(PARTS) or not all(0.0 <= float(v) <= 1.0 for v in probs.values()):
        raise ValueError(f"mention must be a probability in [0, 1] or one per part "
                         f"({', '.join(PARTS)}), got {mention!r}.")
    parts = _mentionable(scene)
    keep = rng.random(len(parts)) < np.array([probs[p] for p in parts])
    if not keep.any():
        keep[int(rng.integers(len(parts)))] = True
    prefix = PREFIXES[int(rng.integers(len(PREFIXES)))]
    return describe(scene, {p for p, k in zip(parts, keep, strict=True) if k}, prefix)


def captions(scene: Scene, n: int, *, mention: float = 0.5) -> list[str]:
    """``n`` captions of ``scene``: the full caption first, then ``n - 1`` random ones drawn
    from the scene's own seed (so they are a pure function of the scene)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    rng = np.random.default_rng([scene.seed, 1])
    return [full_caption(scene)] + [random_caption(scene, rng, mention=mention)
                                    for _ in range(n - 1)]
