"""Readers of image-caption annotation files into :class:`ImageTextDataset`.

Formats
-------
- CSV (:func:`read_csv`) and JSON Lines (:func:`read_jsonl`): one row per
  (image path, caption); rows naming the same image are grouped into one image
  with several captions, in row order. A JSONL caption may also be a list.
- COCO-captions JSON (:func:`read_coco_captions`): ``{"images": [{"id",
  "file_name"}], "annotations": [{"image_id", "caption"}]}``, the format of
  ``captions_train2014.json`` (Chen et al. 2015) that Mod-X trains its initial
  model on.
- Karpathy-split JSON (:func:`read_karpathy`): ``{"images": [{"filename",
  "split", "sentences": [{"raw"}], "filepath"?}]}``, the ``dataset_coco.json`` /
  ``dataset_flickr30k.json`` files of Karpathy & Fei-Fei 2015 that define the
  standard 5K COCO and 1K Flickr30K test sets and Mod-X's Flickr30K phases.

Images keep the order of the annotation file. Relative image paths are resolved
against ``root`` (by default the annotation file's folder); absolute paths are
kept. Every reader checks up front that the files exist and fails naming the
missing ones and the folder searched, and names a missing column or key with
the ones present.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from streams.imagetext.dataset import ImageTextDataset

__all__ = ["read_coco_captions", "read_csv", "read_jsonl", "read_karpathy"]


def _file(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what} {p} does not exist.")
    return p


def _check_exist(paths: Sequence[Path], source: Path, root: Path) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} images listed in {source} are missing "
            f"(relative paths resolve under {root}): {shown}"
            + (" ..." if len(missing) > 3 else "")
            + ". Pass root=<folder holding the images> if they live elsewhere."
        )


def _group(
    rows: Iterable[tuple[str, Any, str | None]], source: Path, root: Path, check_files: bool
) -> ImageTextDataset:
    """One image per distinct path: ``rows`` are (image path, caption or list, category)."""
    captions: dict[str, list[str]] = {}
    categories: dict[str, str | None] = {}
    for n, (image, caption, category) in enumerate(rows, start=1):
        if not image:
            raise ValueError(f"{source}, row {n}: empty image path.")
        if isinstance(caption, str):
            caption = [caption]
        if not isinstance(caption, list) or not all(isinstance(c, str) for c in caption):
            raise TypeError(f"{source}, row {n}: caption must be a string or a list of strings, "
                            f"got {caption!r}.")
        if image in categories and categories[image] != category:
            raise ValueError(f"{source}, row {n}: image {image!r} has two categories, "
                             f"{categories[image]!r} and {category!r}.")
        captions.setdefault(image, []).extend(caption)
        categories[image] = category
    if not captions:
        raise ValueError(f"{source} holds no image-caption row.")
    paths = [root / p for p in captions]  # an absolute p replaces root
    if check_files:
        _check_exist(paths, source, root)
    has_category = [c is not None for c in categories.values()]
    if any(has_category) and not all(has_category):
        raise ValueError(f"{source}: some images have a category and some do not.")
    return ImageTextDataset(
        images=tuple(paths),
        captions=tuple(tuple(c) for c in captions.values()),
        ids=tuple(captions),
        categories=tuple(categories.values()) if all(has_category) else None,  # type: ignore[arg-type]
    )


def _require(keys: Iterable[str], present: Iterable[str], source: Path, what: str) -> None:
    have = list(present)
    missing = [k for k in keys if k not in have]
    if missing:
        raise ValueError(
            f"{source} has no {what} {', '.join(map(repr, missing))}; it has: "
            f"{', '.join(map(repr, have))}. Name the right one with the reader's options."
        )


def read_csv(
    path: str | Path,
    *,
    root: str | Path | None = None,
    image_column: str = "image",
    caption_column: str = "caption",
    category_column: str | None = None,
    delimiter: str = ",",
    check_files: bool = True,
) -> ImageTextDataset:
    """Image-caption pairs from a CSV file with a header row.

    Parameters
    ----------
    path : str or Path
        The CSV file (UTF-8).
    root : str or Path, optional
        Folder that relative image paths start from; the CSV's folder by default.
    image_column, caption_column : str
        Header names of the image path and the caption.
    category_column : str, optional
        Header name of a per-image category (for mAP).
    delimiter : str
        Field separator (``"\\t"`` for TSV).
    check_files : bool
        Check that every image file exists before returning.

    Returns
    -------
    ImageTextDataset
        Ids are the image paths as written in the file.
    """
    source = _file(path, "CSV file")
    base = Path(root).expanduser() if root is not None else source.parent
    with source.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        wanted = [image_column, caption_column] + ([category_column] if category_column else [])
        _require(wanted, reader.fieldnames or [], source, "column")
        rows = [(r[image_column], r[caption_column], r[category_column] if category_column else None)
                for r in reader]
    return _group(rows, source, base, check_files)


def read_jsonl(
    path: str | Path,
    *,
    root: str | Path | None = None,
    image_key: str = "image",
    caption_key: str = "caption",
    category_key: str | None = None,
    check_files: bool = True,
) -> ImageTextDataset:
    """Image-caption pairs from a JSON Lines file, one object per line.

    ``caption_key`` may hold a string or a list of strings. Options as :func:`read_csv`.
    """
    source = _file(path, "JSONL file")
    base = Path(root).expanduser() if root is not None else source.parent
    rows = []
    with source.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{source}, line {n}: not valid JSON ({e.msg}).") from None
            if not isinstance(obj, dict):
                raise TypeError(f"{source}, line {n}: expected a JSON object, got {obj!r}.")
            wanted = [image_key, caption_key] + ([category_key] if category_key else [])
            _require(wanted, obj, source, f"key (line {n})")
            rows.append((obj[image_key], obj[caption_key], obj[category_key] if category_key else None))
    return _group(rows, source, base, check_files)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg}, line {e.lineno}).") from None


def read_coco_captions(
    annotation_file: str | Path, image_dir: str | Path, *, check_files: bool = True
) -> ImageTextDataset:
    """A COCO-captions annotation file (``captions_{train,val}2014.json``).

    Parameters
    ----------
    annotation_file : str or Path
    image_dir : str or Path
        Folder of the split's images; ``file_name`` is relative to it
        (``COCO/train2014``).
    check_files : bool

    Returns
    -------
    ImageTextDataset
        Images in the order of ``"images"``, captions in the order of
        ``"annotations"``; ids are the COCO image ids.

    Raises
    ------
    ValueError
        Missing keys, a caption of an unknown image, or an image without a caption.
    """
    source = _file(annotation_file, "COCO annotation file")
    data = _load_json(source)
    if not isinstance(data, Mapping):
        raise TypeError(f"{source}: expected a JSON object with 'images' and 'annotations'.")
    _require(["images", "annotations"], data, source, "key")
    names: dict[Any, str] = {}
    for n, img in enumerate(data["images"]):
        _require(["id", "file_name"], img, source, f"key in images[{n}]")
        names[img["id"]] = img["file_name"]
    captions: dict[Any, list[str]] = {i: [] for i in names}
    for n, ann in enumerate(data["annotations"]):
        _require(["image_id", "caption"], ann, source, f"key in annotations[{n}]")
        if ann["image_id"] not in captions:
            raise ValueError(f"{source}: annotations[{n}] has unknown image_id {ann['image_id']!r}.")
        captions[ann["image_id"]].append(ann["caption"])
    bare = [i for i, c in captions.items() if not c]
    if bare:
        raise ValueError(f"{source}: {len(bare)} images have no caption (ids {bare[:5]}); "
                         "remove them from 'images'.")
    root = Path(image_dir).expanduser()
    paths = [root / names[i] for i in names]
    if check_files:
        _check_exist(paths, source, root)
    return ImageTextDataset(tuple(paths), tuple(tuple(captions[i]) for i in names),
                            ids=tuple(str(i) for i in names))


def read_karpathy(
    json_file: str | Path,
    image_dir: str | Path,
    *,
    splits: Sequence[str] = ("train",),
    check_files: bool = True,
) -> ImageTextDataset:
    """A Karpathy-split file (``dataset_coco.json``, ``dataset_flickr30k.json``).

    Parameters
    ----------
    json_file : str or Path
    image_dir : str or Path
        Image folder; an image is at ``image_dir/filepath/filename`` where the
        entry has a ``filepath`` (COCO: ``train2014``/``val2014``), else at
        ``image_dir/filename`` (Flickr30K ``flickr30k-images``).
    splits : sequence of str
        Splits to keep, among ``train``, ``val``, ``test`` and ``restval`` (COCO).
        Mod-X trains on Flickr30K ``("train", "val")``; the standard test sets
        are ``("test",)``: 5,000 COCO and 1,000 Flickr30K images.
    check_files : bool

    Returns
    -------
    ImageTextDataset
        Images in file order, captions the ``raw`` sentences (as Mod-X reads
        them); ids are the relative image paths.
    """
    source = _file(json_file, "Karpathy split file")
    data = _load_json(source)
    if not isinstance(data, Mapping):
        raise TypeError(f"{source}: expected a JSON object with 'images'.")
    _require(["images"], data, source, "key")
    wanted = set(splits)
    known = {img.get("split") for img in data["images"]}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"{source} has no split {unknown}; its splits: {sorted(map(str, known))}.")
    rels, captions = [], []
    for n, img in enumerate(data["images"]):
        _require(["filename", "split", "sentences"], img, source, f"key in images[{n}]")
        if img["split"] not in wanted:
            continue
        rel = f"{img['filepath']}/{img['filename']}" if img.get("filepath") else img["filename"]
        rels.append(rel)
        captions.append(tuple(s["raw"] for s in img["sentences"]))
    root = Path(image_dir).expanduser()
    paths = [root / r for r in rels]
    if check_files:
        _check_exist(paths, source, root)
    return ImageTextDataset(tuple(paths), tuple(captions), ids=tuple(rels))
