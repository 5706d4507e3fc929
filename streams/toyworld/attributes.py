"""The toy world as data: attributes, their values, the held-out design and the domains.

A *scene* is 1 to 4 identical objects on a background. Each object is a
geometric shape or a handwritten digit glyph (scikit-learn's bundled 8×8
digits); every other attribute is an independent choice: colour, texture
(shapes only: glyphs are drawn in solid ink), count, position (single objects
only) and background. Nothing here is code that draws: :mod:`.render` maps
these names to pixels and :mod:`.captions` to words, so a new value is one
line here plus, for a shape, its geometry in :mod:`.render`.

Held-out design (what ``toy-clip`` never saw in pretraining)
------------------------------------------------------------
- :data:`HELD_OUT` values: three colours, three shapes, the digits 5–9. Their
  words never occur in a pretraining caption, so their token embeddings keep
  their random initialisation and zero-shot accuracy on them is near chance:
  continual learning has something to *learn*.
- :data:`HELD_OUT_COMBINATIONS`: (colour, shape) pairs whose values are all
  held in, but never drawn together in pretraining (a compositional
  generalisation probe, reported by the pretraining recipe).
- Everything else is *held in*: zero-shot accuracy on it is far above chance,
  which adapting a model can destroy: something to *forget*.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

#: colour name -> RGB in [0, 255] before per-image jitter
COLOURS: MappingProxyType[str, tuple[int, int, int]] = MappingProxyType({
    "red": (220, 40, 40), "green": (40, 175, 60), "blue": (45, 75, 225),
    "yellow": (235, 215, 40), "purple": (145, 50, 195), "brown": (140, 85, 35),
    "pink": (245, 140, 200), "cyan": (40, 215, 225), "lime": (165, 235, 60),
})
#: shape name -> plural noun (the geometry is in :mod:`.render`)
SHAPES: MappingProxyType[str, str] = MappingProxyType({
    "circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses",
    "diamond": "diamonds", "ring": "rings", "star": "stars", "heart": "hearts",
    "crescent": "crescents",
})
#: digit glyph classes, drawn from scikit-learn's ``load_digits``
DIGITS: tuple[str, ...] = tuple("0123456789")
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")
#: object count -> number word
COUNTS: MappingProxyType[int, str] = MappingProxyType({1: "one", 2: "two", 3: "three", 4: "four"})
#: position of a single object -> its phrase in captions
POSITIONS: MappingProxyType[str, str] = MappingProxyType({
    "left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
})
BACKGROUNDS: tuple[str, ...] = ("dark", "light", "noisy")
#: caption openings; every domain's prompt templates use all of them
PREFIXES: tuple[str, ...] = ("a photo of", "an image of", "a picture of")

HELD_OUT: MappingProxyType[str, tuple[str, ...]] = MappingProxyType({
    "colour": ("pink", "cyan", "lime"),
    "shape": ("star", "heart", "crescent"),
    "digit": ("5", "6", "7", "8", "9"),
})
#: (colour, shape) pairs never shown together in pretraining
HELD_OUT_COMBINATIONS: tuple[tuple[str, str], ...] = (
    ("blue", "triangle"), ("red", "ring"), ("yellow", "cross"), ("green", "diamond"),
)

Attribute = Literal["object", "colour", "texture", "count", "position", "background"]


def digit_object(digit: str) -> str:
    """The object name of a digit glyph: ``"3"`` -> ``"digit 3"``."""
    return f"digit {digit}"


def is_digit(obj: str) -> bool:
    """Whether an object name is a digit glyph (``"digit 3"``) rather than a shape."""
    return obj.startswith("digit ")


def noun(obj: str, plural: bool) -> str:
    """Caption noun of an object: ``circle``/``circles``, ``digit 3``/``digit 3s``."""
    if is_digit(obj):
        return f"{obj}s" if plural else obj
    return SHAPES[obj] if plural else obj


def held_in(attribute: Literal["colour", "shape", "digit"]) -> tuple[str, ...]:
    """Values of ``attribute`` that pretraining shows, in definition order."""
    every = {"colour": tuple(COLOURS), "shape": tuple(SHAPES), "digit": DIGITS}
    if attribute not in every:
        raise ValueError(f"attribute must be one of {', '.join(every)}, got {attribute!r}.")
    return tuple(v for v in every[attribute] if v not in HELD_OUT[attribute])


HELD_IN_OBJECTS: tuple[str, ...] = held_in("shape") + tuple(digit_object(d) for d in held_in("digit"))


def _templates(body: str) -> tuple[str, ...]:
    return tuple(f"{p} {body}" for p in PREFIXES)


@dataclass(frozen=True)
class Domain:
    """One classification domain of the world: which attribute is the label, over which values.

    Attributes not named here vary over their held-in values; objects are drawn
    from ``objects``, counts from ``counts``.

    Attributes
    ----------
    name : str
    attribute : {"object", "colour", "texture", "count", "position", "background"}
        The attribute the label is.
    values : tuple
        Label values in class order (object names, colour names, counts...).
    class_names : tuple of str
        What the prompts say for each value (fills the ``{}`` of ``templates``).
    templates : tuple of str
        Prompt templates, phrased exactly as the caption grammar phrases a caption
        that mentions only this attribute.
    objects : tuple of str
        Objects drawn when ``attribute`` is not ``"object"``.
    counts : tuple of int
        Counts drawn when ``attribute`` is not ``"count"``.
    held_out : bool
        Whether the label values are held out of pretraining.
    """

    name: str
    attribute: Attribute
    values: tuple[str | int, ...]
    class_names: tuple[str, ...]
    templates: tuple[str, ...]
    objects: tuple[str, ...] = HELD_IN_OBJECTS
    counts: tuple[int, ...] = (1,)
    held_out: bool = False


_OBJECT_T = _templates("a {}.")
_ADJECTIVE_T = _templates("a {} object.")
_SHAPE_OBJECTS = held_in("shape")

DOMAINS: MappingProxyType[str, Domain] = MappingProxyType({d.name: d for d in (
    Domain("colours", "colour", held_in("colour"), held_in("colour"), _ADJECTIVE_T),
    Domain("shapes", "object", _SHAPE_OBJECTS, _SHAPE_OBJECTS, _OBJECT_T),
    Domain("digits", "object", tuple(digit_object(d) for d in held_in("digit")),
           tuple(digit_object(d) for d in held_in("digit")), _OBJECT_T),
    Domain("textures", "texture", TEXTURES, TEXTURES, _ADJECTIVE_T, objects=_SHAPE_OBJECTS),
    Domain("counts", "count", tuple(COUNTS),
           tuple(f"{w} {'object' if n == 1 else 'objects'}" for n, w in COUNTS.items()),
           _templates("{}.")),
    Domain("backgrounds", "background", BACKGROUNDS, BACKGROUNDS,
           _templates("an object on a {} background.")),
    Domain("positions", "position", tuple(POSITIONS), tuple(POSITIONS.values()),
           _templates("an object {}.")),
    Domain("new-colours", "colour", HELD_OUT["colour"], HELD_OUT["colour"], _ADJECTIVE_T,
           held_out=True),
    Domain("new-shapes", "object", HELD_OUT["shape"], HELD_OUT["shape"], _OBJECT_T,
           held_out=True),
    Domain("new-digits", "object", tuple(digit_object(d) for d in HELD_OUT["digit"]),
           tuple(digit_object(d) for d in HELD_OUT["digit"]), _OBJECT_T, held_out=True),
)})
