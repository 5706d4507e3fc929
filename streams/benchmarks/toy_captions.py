"""``toy-captions``: image-caption pairs of the offline toy world, one task per domain.

The images of task ``t`` are ``toy-mtil``'s images of its domain (same seed, same
scenes) and each comes with ``n_captions`` captions, the full one first, then
partial ones that mention each attribute only with some probability
(:func:`streams.benchmarks.toy.toy_captions`, ``docs/toy_world.md``). The
pretrained ``toy-clip`` backbone knows the held-in domains and has never seen the
held-out ones (``new-colours``, ``new-shapes``, ``new-digits``), so continual
pre-training on this stream has something to learn and something to forget,
offline. Images are rendered when a split is loaded and kept as PNG bytes in an
:class:`~streams.imagetext.dataset.ImageTextDataset`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, Literal

from streams.core import Stream
from streams.imagetext.dataset import ImageTextDataset
from streams.imagetext.tasks import image_text_stream, image_text_task

__all__ = ["DEFAULT_DOMAINS", "toy_captions_stream"]

#: default phases: two held-in domains, then two held-out ones toy-clip never saw
DEFAULT_DOMAINS: tuple[str, ...] = ("colours", "shapes", "new-colours", "new-shapes")


def _pairs(load: Callable[[], Any], name: str) -> Callable[[], ImageTextDataset]:
    """A loader rendering ``load()``'s ``(PIL image, [captions])`` items into PNG bytes."""

    def encoded() -> ImageTextDataset:
        data = load()
        images, captions = [], []
        for i in range(len(data)):
            image, caps = data[i]
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            images.append(buf.getvalue())
            captions.append(tuple(caps))
        return ImageTextDataset(tuple(images), tuple(captions),
                                ids=tuple(f"{name}-{i}" for i in range(len(images))))

    return encoded


def toy_captions_stream(
    *,
    domains: list[str] | None = None,
    n_train: int = 30,
    n_test: int = 10,
    n_captions: int = 5,
    seed: int = 0,
    scenario: Literal["task-incremental", "class-incremental"] = "task-incremental",
) -> Stream:
    """The toy world's image-caption pairs, one task per domain (offline).

    Parameters
    ----------
    domains : list of str or None
        Task order (default :data:`DEFAULT_DOMAINS`); any of ``toy-mtil``'s domains.
    n_train, n_test : int
        Images per class of the domain in the train and test splits.
    n_captions : int
        Captions per image (the full one first).
    seed : int
        World seed (the same scenes as ``toy-mtil`` with that seed).
    scenario : {"task-incremental", "class-incremental"}
        Each test set scored alone, or against the union of the test sets seen.
    """
    from streams.benchmarks.toy import toy_captions  # the toy world: imported when built

    tasks = toy_captions(domains=list(domains or DEFAULT_DOMAINS), n_train=n_train, n_test=n_test,
                         n_captions=n_captions, seed=seed)
    return image_text_stream("toy-captions", [
        image_text_task(t.name, _pairs(t.load_train, f"{t.name}-train"),
                        _pairs(t.load_test, f"{t.name}-test"), key=t.key,
                        metadata=dict(t.metadata))
        for t in tasks], scenario)
