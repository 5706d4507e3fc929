"""Streams on the toy world (:mod:`streams.toyworld`), offline, for ``toy-clip``.

``toy-mtil``
    MTIL-like (ZSCL, Zheng et al. 2023): one domain per task, each scored on its
    own classes (task-incremental). Held-in domains (colours, shapes, digits 0-4,
    counts, textures, backgrounds, positions) are what ``toy-clip`` knows
    zero-shot; held-out ones (``new-colours``, ``new-shapes``, ``new-digits``)
    are concepts it never saw.
``toy-xtail``
    X-TAIL-like (RAIL, Xu et al. 2024): ``n_shots`` training images per class,
    every test image scored on the union of all classes (task-agnostic), one
    template per class. Only object-identity domains take part (held-in and
    held-out shapes and digits): each image shows one kind of object, so the
    union label space is well posed, which it would not be for colours and shapes
    of the same image.
``toy-cil``
    One attribute's values (digits 0-9, the 9 shapes or the 9 colours) cut into
    class-incremental tasks, held-in values first.
:func:`toy_captions`
    Per task image-caption pairs for continual vision-language pre-training
    (not a classification stream, so not registered).

Every split is drawn from ``default_rng([seed, crc32(domain), split])``
(:func:`streams.toyworld.dataset.domain_rng`); task keys include the world's
fingerprint, so editing the world invalidates cached features.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from hashlib import sha256
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from streams.benchmarks.splits import ClassOrder, class_order, task_classes
from streams.benchmarks.xtail import few_shot
from streams.core import Stream, Task
from streams.toyworld.attributes import (
    BACKGROUNDS,
    COLOURS,
    COUNTS,
    DIGITS,
    DOMAINS,
    HELD_IN_OBJECTS,
    HELD_OUT_COMBINATIONS,
    POSITIONS,
    SHAPES,
    TEXTURES,
    Domain,
    digit_object,
    held_in,
)
from streams.toyworld.captions import full_caption
from streams.toyworld.dataset import CaptionDataset, domain_dataset, domain_scenes
from streams.toyworld.render import random_scene

#: default task order of ``toy-mtil``: held-out domains interleaved with held-in ones
MTIL_ORDER: tuple[str, ...] = (
    "colours", "shapes", "new-colours", "counts", "digits", "new-shapes", "textures",
    "new-digits",
)
XTAIL_ORDER: tuple[str, ...] = ("shapes", "digits", "new-shapes", "new-digits")
_WORLD_FILES = ("attributes.py", "render.py", "captions.py", "dataset.py")
_CIL_DOMAIN = {"digit": "digits", "shape": "shapes", "colour": "colours"}
#: scenes in the reference set of a toy stream (:func:`reference_set`)
REFERENCE_SIZE = 1000


@cache
def world_fingerprint() -> str:
    """First 16 hex digits of the SHA-256 of the world's source files (part of task keys)."""
    h = sha256()
    for name in _WORLD_FILES:
        h.update(resources.files("streams.toyworld").joinpath(name).read_bytes())
    return h.hexdigest()[:16]


def _check_sizes(**sizes: int | None) -> None:
    for name, value in sizes.items():
        if value is not None and (isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _domains(names: Sequence[str], allowed: Sequence[str]) -> list[Domain]:
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise ValueError(f"unknown toy domains {unknown or list(names)}; valid: {', '.join(allowed)}.")
    if len(set(names)) != len(names):
        raise ValueError(f"toy domains repeat: {list(names)}.")
    return [DOMAINS[n] for n in names]


def reference_set(*, n: int = REFERENCE_SIZE, seed: int = 0) -> tuple[CaptionDataset, list[str]]:
    """A reference set held out from every task: ``n`` scenes of the pretraining distribution
    and their full captions (the toy world's stand-in for ZSCL's ImageNet images and
    Conceptual Captions, Zheng et al. 2023, Sec. 3.2).

    Scenes take held-in values only (held-in objects and colours, every texture, count,
    position and background, no held-out combination), as ``toy-clip``'s pretraining does,
    and are drawn from ``default_rng([seed, crc32("reference")])``, a generator no task
    split uses; digit glyphs come from the training pool, never the test pool. Offered by
    every toy stream as ``metadata["reference_set"]`` (used by ``zscl``).

    Returns
    -------
    images : CaptionDataset, length n
        Items ``(PIL image, [full caption])``.
    captions : list of str, length n
        The full caption of every scene.
    """
    _check_sizes(n=n)
    rng = np.random.default_rng([seed, zlib.crc32(b"reference")])
    scenes = [random_scene(rng, objects=HELD_IN_OBJECTS, colours=held_in("colour"),
                           textures=TEXTURES, counts=tuple(COUNTS), positions=tuple(POSITIONS),
                           backgrounds=BACKGROUNDS, exclude=HELD_OUT_COMBINATIONS)
              for _ in range(n)]
    data = CaptionDataset(scenes, n_captions=1, glyphs="train")
    return data, [full_caption(s) for s in scenes]


def domain_task(domain: Domain, *, n_train: int, n_test: int, seed: int, stream: str,
                templates: Sequence[str] | None = None) -> Task:
    """The task of one domain: ``n_train``/``n_test`` images per class, labels index
    ``domain.values``."""
    return Task(
        name=domain.name, class_names=domain.class_names,
        load_train=lambda: domain_dataset(domain, n_train, seed=seed, split="train"),
        load_test=lambda: domain_dataset(domain, n_test, seed=seed, split="test"),
        key=f"{stream}:{world_fingerprint()}:{domain.name}:train={n_train}:test={n_test}:seed={seed}",
        templates=tuple(templates or domain.templates),
        metadata={"source": "toy world", "attribute": domain.attribute,
                  "held_out": domain.held_out, "values": list(domain.values)},
    )


def toy_mtil(
    *,
    domains: list[str] | None = None,
    n_train: int = 100,
    n_test: int = 50,
    seed: int = 0,
) -> Stream:
    """Toy MTIL: one toy-world domain per task, task-incremental.

    Parameters
    ----------
    domains : list of str or None
        Task order (default :data:`MTIL_ORDER`); any of the world's domains
        (:data:`streams.toyworld.attributes.DOMAINS`).
    n_train, n_test : int
        Images per class in each task's train and test split.
    seed : int
        Seed of the world's draws.
    """
    _check_sizes(n_train=n_train, n_test=n_test)
    chosen = _domains(list(MTIL_ORDER if domains is None else domains), tuple(DOMAINS))
    tasks = tuple(domain_task(d, n_train=n_train, n_test=n_test, seed=seed, stream="toy-mtil")
                  for d in chosen)
    return Stream("toy-mtil", tasks, "task-incremental",
                  {"seed": seed, "reference_set": partial(reference_set, seed=seed)})


def toy_xtail(
    *,
    domains: list[str] | None = None,
    n_shots: int | None = 16,
    n_train: int = 100,
    n_test: int = 50,
    seed: int = 0,
) -> Stream:
    """Toy X-TAIL: few-shot object-identity domains scored on the union of all classes.

    Parameters
    ----------
    domains : list of str or None
        Default :data:`XTAIL_ORDER`; only object domains (shapes, digits, new-shapes,
        new-digits) are allowed.
    n_shots : int or None
        Training images per class, drawn from the ``n_train`` per class with
        :func:`streams.benchmarks.xtail.few_shot` (``None``: all ``n_train``).
    n_train, n_test : int
    seed : int
        Seed of the world's draws and of the few-shot sampling.
    """
    _check_sizes(n_shots=n_shots, n_train=n_train, n_test=n_test)
    if n_shots is not None and n_shots > n_train:
        raise ValueError(f"toy-xtail option 'n_shots' ({n_shots}) is larger than 'n_train' "
                         f"({n_train}), the images per class the shots are drawn from; set "
                         f"n_shots <= {n_train}, or n_train >= {n_shots}.")
    objects = tuple(n for n, d in DOMAINS.items() if d.attribute == "object")
    chosen = _domains(list(XTAIL_ORDER if domains is None else domains), objects)
    tasks = []
    for d in chosen:
        task = domain_task(d, n_train=n_train, n_test=n_test, seed=seed, stream="toy-xtail",
                           templates=d.templates[:1])
        if n_shots is not None:
            base = task.load_train
            task = Task(name=task.name, class_names=task.class_names,
                        load_train=lambda base=base: few_shot(base(), n_shots, seed),
                        load_test=task.load_test, key=f"{task.key}:shots={n_shots}",
                        templates=task.templates, metadata=dict(task.metadata) | {"n_shots": n_shots})
        tasks.append(task)
    return Stream("toy-xtail", tuple(tasks), "task-agnostic",
                  {"n_shots": n_shots, "seed": seed,
                   "reference_set": partial(reference_set, seed=seed)})


def toy_cil(
    *,
    attribute: Literal["digit", "shape", "colour"] = "digit",
    n_tasks: int = 5,
    class_order_seed: ClassOrder = None,
    n_train: int = 100,
    n_test: int = 50,
    seed: int = 0,
) -> Stream:
    """Toy class-incremental: one attribute's values cut into ``n_tasks`` tasks.

    Parameters
    ----------
    attribute : {"digit", "shape", "colour"}
        10 digits, 9 shapes or 9 colours; in definition order the held-in values come
        first, so early tasks are known to ``toy-clip`` and late ones are new.
    n_tasks : int
        Number of tasks (:func:`streams.benchmarks.splits.task_classes`).
    class_order_seed : int, "run", list of int or None
        ``None`` keeps definition order, an integer ``RandomState(seed).permutation``, a
        list an explicit order (:func:`streams.benchmarks.splits.class_order`).
    n_train, n_test : int
    seed : int
    """
    _check_sizes(n_train=n_train, n_test=n_test)
    if attribute not in _CIL_DOMAIN:
        raise ValueError(f"attribute must be one of {', '.join(_CIL_DOMAIN)}, got {attribute!r}.")
    values: tuple[str, ...] = {"digit": tuple(digit_object(d) for d in DIGITS),
                               "shape": tuple(SHAPES), "colour": tuple(COLOURS)}[attribute]
    order = class_order(len(values), class_order_seed)
    template = DOMAINS[_CIL_DOMAIN[attribute]]
    ident = f"toy-cil:{world_fingerprint()}:{attribute}:order={order}:seed={seed}"
    tasks = []
    for i, group in enumerate(task_classes(order, n_tasks)):
        names = tuple(values[c] for c in group)
        domain = Domain(f"{attribute}:{'|'.join(names)}", template.attribute, names, names,
                        template.templates)
        task = domain_task(domain, n_train=n_train, n_test=n_test, seed=seed, stream=ident)
        tasks.append(Task(name=f"toy-cil-{attribute}-{i}", class_names=names,
                          load_train=task.load_train, load_test=task.load_test,
                          key=task.key, templates=task.templates,
                          metadata=dict(task.metadata) | {"classes": list(group)}))
    return Stream("toy-cil", tuple(tasks), "class-incremental",
                  {"class_order": order, "reference_set": partial(reference_set, seed=seed)})


@dataclass(frozen=True)
class CaptionTask:
    """One task of image-caption pairs.

    Attributes
    ----------
    name : str
        The domain whose images the task holds.
    load_train, load_test : callable returning a :class:`~streams.toyworld.dataset.CaptionDataset`
        Lazy loaders; items are ``(PIL image, [caption, ...])``.
    key : str
        Stable identity of the task's data.
    metadata : mapping
        ``concepts``: the domain's label values (the concepts the task teaches).
    """

    name: str
    load_train: Callable[[], Dataset] = field(repr=False, compare=False)
    load_test: Callable[[], Dataset] = field(repr=False, compare=False)
    key: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))


def toy_captions(
    *,
    domains: list[str] | None = None,
    n_train: int = 100,
    n_test: int = 50,
    n_captions: int = 5,
    seed: int = 0,
) -> tuple[CaptionTask, ...]:
    """Image-caption pairs per task, for continual vision-language pre-training.

    The images of task ``t`` are those of ``toy-mtil``'s task ``t`` (same seed,
    same scenes); each comes with ``n_captions`` captions, the full one first
    (:func:`streams.toyworld.captions.captions`). Retrieval (R@K) is the natural
    score; this is not a classification stream.

    Returns
    -------
    tuple of CaptionTask, length T
    """
    _check_sizes(n_train=n_train, n_test=n_test, n_captions=n_captions)
    chosen = _domains(list(MTIL_ORDER if domains is None else domains), tuple(DOMAINS))

    def load(domain: Domain, n: int, split: str) -> CaptionDataset:
        scenes, _ = domain_scenes(domain, n, seed=seed, split=split)
        return CaptionDataset(scenes, n_captions=n_captions,
                              glyphs="test" if split == "test" else "train")

    return tuple(
        CaptionTask(
            name=d.name,
            load_train=lambda d=d: load(d, n_train, "train"),
            load_test=lambda d=d: load(d, n_test, "test"),
            key=(f"toy-captions:{world_fingerprint()}:{d.name}:train={n_train}:test={n_test}"
                 f":captions={n_captions}:seed={seed}"),
            metadata={"concepts": list(d.values), "held_out": d.held_out},
        )
        for d in chosen
    )

