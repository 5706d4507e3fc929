"""Prompt templates and zero-shot classification heads.

Templates are data: ``str.format`` strings with one ``{}`` slot for the class
name (never lambdas), so they can be stored in configs, hashed into cache
keys and printed. Tasks carry their own (``Task.templates``); this module
adds the standard CLIP sets and builds heads from them.

The zero-shot head follows CLIP (Radford et al. 2021, §3.1.4, "prompt
ensembling") exactly as ``open_clip.build_zero_shot_classifier`` does: each
prompt is embedded and L2-normalised, the T embeddings of a class are
averaged, and the mean is L2-normalised again:

    w_c = normalize( (1/T) Σ_t normalize(f_text(template_t.format(name_c))) )

Heads are cached in memory per (backbone fingerprint, class name, templates),
one row at a time, so a growing class-incremental label space only embeds
its new classes. The fingerprint changes when the weights do (see
``OpenCLIPBackbone.refresh_fingerprint``); pass ``cache=False`` while the
text tower carries unmerged adapters.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from streams.core import DEFAULT_TEMPLATES

_HEAD_CACHE: OrderedDict[tuple[str, str, tuple[str, ...]], torch.Tensor] = OrderedDict()
HEAD_CACHE_SIZE = 16384
TEXT_BATCH = 256


def _clip_templates(name: str) -> tuple[str, ...]:
    """open_clip's template set ``name`` turned from lambdas into format strings."""
    from open_clip import zero_shot_metadata

    return tuple(t("{}") for t in getattr(zero_shot_metadata, name))


def template_set(name: str) -> tuple[str, ...]:
    """A named template set.

    ``"default"``: ``("a photo of a {}.",)``; ``"clip-imagenet"``: CLIP's 80
    ImageNet templates; ``"clip-imagenet-simple"``: the 7-template subset
    (both from CLIP's zero-shot notebook, as shipped by open_clip).
    """
    sets = {
        "default": lambda: DEFAULT_TEMPLATES,
        "clip-imagenet": lambda: _clip_templates("OPENAI_IMAGENET_TEMPLATES"),
        "clip-imagenet-simple": lambda: _clip_templates("SIMPLE_IMAGENET_TEMPLATES"),
    }
    if name not in sets:
        raise ValueError(f"Unknown template set {name!r}; valid sets: {', '.join(sets)}.")
    return sets[name]()


def _per_class_templates(
    class_names: Sequence[str], templates: Sequence[str] | Sequence[Sequence[str]]
) -> list[tuple[str, ...]]:
    """Templates of each class; validates shapes and ``{}`` slots."""
    if isinstance(templates, str) or len(templates) == 0:
        raise TypeError(
            "templates must be a non-empty sequence of format strings such as "
            f"['a photo of a {{}}.'] (or one such sequence per class), got {templates!r}."
        )
    if all(isinstance(t, str) for t in templates):
        per_class = [tuple(templates)] * len(class_names)  # type: ignore[arg-type]
    else:
        if len(templates) != len(class_names):
            raise ValueError(
                f"got {len(templates)} template lists for {len(class_names)} classes; give one "
                "list per class or a single list shared by all."
            )
        per_class = [tuple(ts) for ts in templates]
    for ts in per_class:
        bad = [t for t in ts if not isinstance(t, str) or "{}" not in t]
        if not ts or bad:
            raise ValueError(
                f"template {bad[0] if bad else ts!r} has no '{{}}' slot for the class name; "
                "templates are format strings like 'a photo of a {}.'."
            )
    return per_class


def _embed_classes(backbone: Any, names: list[str], templates: list[tuple[str, ...]]) -> torch.Tensor:
    """Template-averaged, re-normalised text embeddings (K, D) of K classes, float32 on CPU."""
    texts = [t.format(name) for name, ts in zip(names, templates) for t in ts]
    chunks = [backbone.encode_texts(texts[i : i + TEXT_BATCH]).float()
              for i in range(0, len(texts), TEXT_BATCH)]
    emb = F.normalize(torch.cat(chunks), dim=-1)
    rows, start = [], 0
    for ts in templates:
        rows.append(emb[start : start + len(ts)].mean(dim=0))
        start += len(ts)
    return F.normalize(torch.stack(rows), dim=-1).cpu()


def zero_shot_head(
    backbone: Any,
    class_names: Sequence[str],
    templates: Sequence[str] | Sequence[Sequence[str]],
    *,
    cache: bool = True,
) -> torch.Tensor:
    """CLIP zero-shot classifier weights, one template-averaged text embedding per class.

    Parameters
    ----------
    backbone : Backbone
        Must have a text tower (``has_text``).
    class_names : sequence of str, length C
    templates : sequence of str, or sequence (length C) of sequences of str
        Format strings with one ``{}`` slot, shared by every class or given per
        class (``LabelSpace.templates``).
    cache : bool
        Reuse rows computed before for the same (fingerprint, name, templates).

    Returns
    -------
    torch.Tensor, shape (C, D), float32, on CPU
        Unit-norm rows; equal to ``open_clip.build_zero_shot_classifier(...).T``.

    Raises
    ------
    ValueError
        Backbone without a text tower; no classes; templates without a ``{}`` slot.
    """
    if not getattr(backbone, "has_text", False):
        raise ValueError(
            f"backbone {getattr(backbone, 'name', backbone)!r} has no text tower, so it cannot "
            "build a zero-shot head; use a VLM backbone such as 'ViT-B-16:openai' or 'cl-tiny-vit'."
        )
    if isinstance(class_names, str) or len(class_names) == 0:
        raise ValueError(f"class_names must be a non-empty sequence of names, got {class_names!r}.")
    names = [str(c) for c in class_names]
    per_class = _per_class_templates(names, templates)
    keys = [(backbone.fingerprint, n, ts) for n, ts in zip(names, per_class)]
    todo = list(dict.fromkeys(k for k in keys if not cache or k not in _HEAD_CACHE))
    fresh: dict[tuple[str, str, tuple[str, ...]], torch.Tensor] = {}
    if todo:
        with torch.no_grad():
            rows = _embed_classes(backbone, [k[1] for k in todo], [k[2] for k in todo])
        fresh = dict(zip(todo, rows))
    head = torch.stack([fresh[k] if k in fresh else _HEAD_CACHE[k] for k in keys])
    if cache:
        for k in keys:
            _HEAD_CACHE[k] = fresh[k] if k in fresh else _HEAD_CACHE[k]
            _HEAD_CACHE.move_to_end(k)
        while len(_HEAD_CACHE) > HEAD_CACHE_SIZE:
            _HEAD_CACHE.popitem(last=False)
    return head


def clear_head_cache() -> None:
    """Forget every cached zero-shot row."""
    _HEAD_CACHE.clear()
