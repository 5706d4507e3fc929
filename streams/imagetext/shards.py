"""Image-text pairs from webdataset tar shards, for data that does not fit in a folder.

A shard is a tar file whose members are grouped by basename into samples
(``000017.jpg`` + ``000017.txt`` = one sample, key ``000017``), the format of
the ``webdataset`` package (Aizman et al. 2020) and of ``img2dataset``. The
image is the first member found among ``image_keys``; the captions are the
non-blank lines of the ``caption_key`` member (UTF-8), so one sample may carry
several captions, one per line.

:func:`iter_shards` streams the pairs (training on data of any size; under
``torchrun`` each rank and each data-loader worker reads a disjoint subset of
the shards). :func:`read_shards` reads shards whole into an
:class:`ImageTextDataset` whose images stay encoded in memory (test splits,
which retrieval evaluation needs as a whole, with a flat caption index).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from braceexpand import braceexpand
from PIL import Image
from torch.utils.data import IterableDataset

from streams.imagetext.dataset import ImageTextDataset

__all__ = ["DEFAULT_IMAGE_KEYS", "iter_shards", "read_shards", "shard_paths"]

DEFAULT_IMAGE_KEYS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")


def shard_paths(urls: str | Sequence[str], *, root: str | Path | None = None) -> list[Path]:
    """The shard files named by ``urls``, braces expanded, relative ones under ``root``.

    Parameters
    ----------
    urls : str or sequence of str
        Paths, with ``{000..009}`` brace ranges allowed (``"train-{000..009}.tar"``).
    root : str or Path, optional
        Folder that relative paths start from (the current folder by default).

    Raises
    ------
    FileNotFoundError
        Naming the missing shards.
    ValueError
        ``urls`` names no shard.
    """
    patterns = [urls] if isinstance(urls, str) else list(urls)
    base = Path(root).expanduser() if root is not None else Path()
    paths = [base / p for pattern in patterns for p in braceexpand(pattern)]
    if not paths:
        raise ValueError(f"no shard named by {urls!r}.")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise FileNotFoundError(f"{len(missing)} of {len(paths)} shards are missing: {shown}.")
    return paths


def _pair(
    sample: dict[str, Any], image_keys: Sequence[str], caption_key: str
) -> tuple[str, bytes, tuple[str, ...]]:
    """(key, encoded image, captions) of one raw webdataset sample."""
    where = f"sample {sample.get('__key__')!r} of {sample.get('__url__')}"
    present = sorted(k for k in sample if not k.startswith("__"))
    image_key = next((k for k in image_keys if k in sample), None)
    if image_key is None:
        raise ValueError(f"{where} has no image among {list(image_keys)}; it has {present}. "
                         "Pass image_keys=... naming the image extension.")
    if caption_key not in sample:
        raise ValueError(f"{where} has no {caption_key!r} member; it has {present}. "
                         "Pass caption_key=... naming the caption extension.")
    text = sample[caption_key].decode("utf-8")
    captions = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not captions:
        raise ValueError(f"{where} has an empty {caption_key!r} caption.")
    return sample["__key__"], sample[image_key], captions


class _ShardPairs(IterableDataset):
    """Streaming ``(PIL image, [captions])`` pairs of tar shards (see :func:`iter_shards`)."""

    def __init__(self, paths: list[Path], image_keys: tuple[str, ...], caption_key: str) -> None:
        self.paths, self.image_keys, self.caption_key = paths, image_keys, caption_key

    def __iter__(self) -> Iterator[tuple[Image.Image, list[str]]]:
        import webdataset as wds

        pipeline = wds.WebDataset([str(p) for p in self.paths], shardshuffle=False,
                                  nodesplitter=wds.split_by_node, empty_check=False)
        for sample in pipeline:
            _, encoded, captions = _pair(sample, self.image_keys, self.caption_key)
            with Image.open(io.BytesIO(encoded)) as img:
                yield img.convert("RGB"), list(captions)


def iter_shards(
    urls: str | Sequence[str],
    *,
    root: str | Path | None = None,
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
    caption_key: str = "txt",
) -> IterableDataset:
    """Stream ``(image, captions)`` pairs from tar shards, in shard order.

    Parameters
    ----------
    urls : str or sequence of str
        Shard paths (brace ranges allowed), see :func:`shard_paths`.
    root : str or Path, optional
        Folder that relative shard paths start from.
    image_keys : sequence of str
        Member extensions tried, in order, for the image.
    caption_key : str
        Member extension of the captions (one per line).

    Returns
    -------
    torch.utils.data.IterableDataset
        Yields a PIL RGB image and its list of captions. With
        ``torch.distributed`` initialised, rank ``r`` of ``W`` reads shards
        ``r, r + W, ...`` (``webdataset.split_by_node``); data-loader workers split
        a rank's shards the same way.
    """
    return _ShardPairs(shard_paths(urls, root=root), tuple(image_keys), caption_key)


def read_shards(
    urls: str | Sequence[str],
    *,
    root: str | Path | None = None,
    image_keys: Sequence[str] = DEFAULT_IMAGE_KEYS,
    caption_key: str = "txt",
) -> ImageTextDataset:
    """Every sample of the shards, in shard order, as an in-memory :class:`ImageTextDataset`.

    Options as :func:`iter_shards`; unlike it, every rank reads every shard.
    Images stay encoded (their bytes), decoded when an item is read; ids are
    the sample keys, which must be unique across the shards.
    """
    import webdataset as wds

    paths = shard_paths(urls, root=root)
    images, captions, ids = [], [], []
    for sample in wds.WebDataset([str(p) for p in paths], shardshuffle=False,
                                 nodesplitter=None, workersplitter=None, empty_check=False):
        key, encoded, caps = _pair(sample, tuple(image_keys), caption_key)
        ids.append(key)
        images.append(encoded)
        captions.append(caps)
    if not images:
        raise ValueError(f"the shards {[str(p) for p in paths[:3]]} hold no sample.")
    return ImageTextDataset(tuple(images), tuple(captions), ids=tuple(ids))
