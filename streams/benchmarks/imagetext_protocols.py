"""Published image-text continual pre-training protocols, as data: phases, expected files.

``coco-flickr`` (Mod-X, Ni et al., ICML 2023; ZixuanNi/Mod-X)
    Phase 0 trains on COCO captions ``train2014`` (``captions_train2014.json``,
    the reference's ``Joint_Train`` COCO model is Mod-X's starting point); phases
    1-5 are the Flickr30K Karpathy ``train`` + ``val`` images (30,014) in file
    order, cut into 5 contiguous fifths at ``int(N / 5 * k)`` as
    ``ModX_Training/continue_train_model.py`` does. Every phase is scored on
    image-text retrieval of the Karpathy test sets: 5,000 COCO images (phase 0)
    and 1,000 Flickr30K images (phases 1-5 share it: same ``test_key``).
``p9d`` (CTP, Zhu et al., ICCV 2023; KevinLight831/CTP, KevinLight831/P9D)
    One task per industry of P9D's ``train.json``, in CTP's order
    (``configs/base_seqF.yaml``) or reversed (``base_seqF_reverse.yaml``); each
    task's cross-modal test set is the ``test.json`` items of its industry (sizes
    576, 690, 120, 110, 141, 252, 263, 309, 385 in the default order, CTP
    ``itm_eval``) and its multimodal query/gallery sets the ``query.json`` /
    ``gallery.json`` items of its industry, with categories (``cate_name``) for
    mAP@K. CTP scores after task ``t`` on the union of tasks ``0..t``.

Paths are relative to the data root. Nothing is read until a loader is called;
:meth:`ImageTextProtocol.missing` only looks at the file system.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streams.imagetext.dataset import ImageTextDataset
from streams.imagetext.readers import read_coco_captions, read_karpathy

__all__ = ["P9D_INDUSTRIES", "PROTOCOLS", "ExpectedPath", "ImageTextProtocol", "Phase",
           "coco_flickr", "modx_phase_bounds", "p9d"]

Loader = Callable[[Path], ImageTextDataset]


@dataclass(frozen=True)
class ExpectedPath:
    """A file or folder a protocol needs, relative to the data root."""

    relative: str
    kind: Literal["file", "dir"]
    description: str

    def present(self, data_root: str | Path) -> bool:
        """Whether it exists under ``data_root`` (as a file or a folder, per ``kind``)."""
        path = Path(data_root) / self.relative
        return path.is_file() if self.kind == "file" else path.is_dir()


@dataclass(frozen=True)
class Phase:
    """One training phase (task) of a protocol.

    Attributes
    ----------
    name : str
    description : str
    load_train, load_test : callable ``(data_root) -> ImageTextDataset``
    test_key : str
        Phases with equal keys share one test set (evaluate it once).
    needs : tuple of str
        ``ExpectedPath.relative`` of the paths its loaders read.
    expected_test_pairs : int or None
        Reference size of the test set (image-caption pairs), for checks.
    load_query_gallery : callable ``(data_root) -> (query, gallery)`` or None
        Multimodal retrieval sets with categories (P9D only).
    trained : bool
        False for an evaluation-only phase: scored at every step, never trained on.
    test_needs : tuple of str
        The paths of ``needs`` its test loaders read (all of ``needs`` when empty):
        what an evaluation-only phase requires.
    """

    name: str
    description: str
    load_train: Loader
    load_test: Loader
    test_key: str
    needs: tuple[str, ...]
    expected_test_pairs: int | None = None
    load_query_gallery: Callable[[Path], tuple[ImageTextDataset, ImageTextDataset]] | None = None
    trained: bool = True
    test_needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageTextProtocol:
    """A published image-text protocol: its phases, files, sources and scoring."""

    name: str
    title: str
    paper: str
    reference: str
    scenario: Literal["task-incremental", "class-incremental"]
    phases: tuple[Phase, ...]
    paths: tuple[ExpectedPath, ...]
    download: str
    scores: tuple[str, ...]

    def missing(self, data_root: str | Path) -> list[ExpectedPath]:
        """The expected paths absent under ``data_root``."""
        return [p for p in self.paths if not p.present(data_root)]


# -- coco-flickr (Mod-X) ----------------------------------------------------------------

MODX_PHASES = 5
_COCO_TRAIN_JSON = "coco/annotations/captions_train2014.json"
_COCO_KARPATHY = "coco/dataset_coco.json"
_F30K_KARPATHY = "flickr30k/dataset_flickr30k.json"


def modx_phase_bounds(n_images: int, phases: int = MODX_PHASES) -> list[int]:
    """Phase boundaries over ``n_images`` images: ``[int(n / phases * k) for k in 0..phases]``.

    Computed in floating point exactly as the reference
    (``index_list = [0, int(len/5), int(len/5*2), ...]``); Flickr30K train+val
    (30,014 images) gives ``[0, 6002, 12005, 18008, 24011, 30014]``.
    """
    if n_images < phases or phases < 1:
        raise ValueError(f"cannot cut {n_images} images into {phases} phases.")
    return [0] + [int(n_images / phases * k) for k in range(1, phases + 1)]


def _flickr_phase(k: int) -> Loader:
    def load(root: Path) -> ImageTextDataset:
        pool = read_karpathy(Path(root) / _F30K_KARPATHY, Path(root) / "flickr30k/flickr30k-images",
                             splits=("train", "val"))
        bounds = modx_phase_bounds(len(pool))
        return pool.subset(range(bounds[k], bounds[k + 1]))
    return load


def coco_flickr(coco_phase: Literal["train", "evaluate"] = "train") -> ImageTextProtocol:
    """Mod-X's COCO then Flickr30K protocol (6 phases, task-incremental retrieval).

    Parameters
    ----------
    coco_phase : {"train", "evaluate"}
        ``"train"``: phase 0 trains on COCO (Mod-X's RN50, trained from scratch
        on COCO by ``Joint_Train``). ``"evaluate"``: phase 0 is evaluation only
        (Mod-X's ViT-B/32 starts from OpenAI CLIP and trains on the Flickr30K
        phases only; the COCO test set measures what it keeps).
    """
    if coco_phase not in ("train", "evaluate"):
        raise ValueError(f"coco_phase must be 'train' or 'evaluate', got {coco_phase!r}.")
    def coco_train(root: Path) -> ImageTextDataset:
        return read_coco_captions(Path(root) / _COCO_TRAIN_JSON, Path(root) / "coco/train2014")

    def coco_test(root: Path) -> ImageTextDataset:
        return read_karpathy(Path(root) / _COCO_KARPATHY, Path(root) / "coco", splits=("test",))

    def flickr_test(root: Path) -> ImageTextDataset:
        return read_karpathy(Path(root) / _F30K_KARPATHY, Path(root) / "flickr30k/flickr30k-images",
                             splits=("test",))

    f30k = (_F30K_KARPATHY, "flickr30k/flickr30k-images")
    phases = (Phase("coco", "COCO captions train2014 (82,783 images); Mod-X's initial model",
                    coco_train, coco_test, "coco-karpathy-test",
                    (_COCO_TRAIN_JSON, "coco/train2014", _COCO_KARPATHY, "coco/val2014"), 25_010,
                    trained=coco_phase == "train", test_needs=(_COCO_KARPATHY, "coco/val2014")),)
    phases += tuple(
        Phase(f"flickr30k-{k + 1}", f"Flickr30K Karpathy train+val, fifth {k + 1} of {MODX_PHASES}",
              _flickr_phase(k), flickr_test, "flickr30k-karpathy-test", f30k, 5_000)
        for k in range(MODX_PHASES)
    )
    paths = (
        ExpectedPath(_COCO_TRAIN_JSON, "file", "COCO 2014 caption annotations (train)"),
        ExpectedPath("coco/train2014", "dir", "COCO 2014 train images"),
        ExpectedPath("coco/val2014", "dir", "COCO 2014 val images (hold the Karpathy test split)"),
        ExpectedPath(_COCO_KARPATHY, "file", "Karpathy split of COCO (test: 5,000 images)"),
        ExpectedPath("flickr30k/flickr30k-images", "dir", "Flickr30K images"),
        ExpectedPath(_F30K_KARPATHY, "file", "Karpathy split of Flickr30K (test: 1,000 images)"),
    )
    return ImageTextProtocol(
        name="coco-flickr",
        title="Mod-X: COCO, then Flickr30K in 5 phases",
        paper="Ni et al., Continual Vision-Language Representation Learning with Off-Diagonal "
              "Information, ICML 2023 (arXiv 2305.07437)",
        reference="ZixuanNi/Mod-X@a6a2f6c2d967a0c42d6ffe7e0efb0799733f7d82",
        scenario="task-incremental", phases=phases, paths=paths,
        download="COCO 2014 images and captions: https://cocodataset.org/#download; Flickr30K "
                 "images: https://shannon.cs.illinois.edu/DenotationGraph/ (request form); "
                 "Karpathy splits dataset_coco.json and dataset_flickr30k.json: "
                 "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
        scores=("i2t_recall@1", "i2t_recall@5", "i2t_recall@10", "t2i_recall@1", "t2i_recall@5",
                "t2i_recall@10", "mean_recall"),
    )


# -- p9d (CTP) -------------------------------------------------------------------------

#: P9D industries in CTP's default task order: (key in the JSON files, English name)
P9D_INDUSTRIES: tuple[tuple[str, str], ...] = (
    ("家居用品", "Household"), ("家装家饰", "Furnishings"), ("食品/保健", "Food"),
    ("美容护理", "Beauty"), ("服饰鞋包", "Clothing"), ("车品配件", "Auto"),
    ("母婴", "Parenting"), ("运动/户外", "Outdoor"), ("3C数码", "Electronics"),
)
#: cross-modal test pairs per industry in the default order: CTP ``itm_eval``'s ``test_list``,
#: which splits the union test set (``test.json`` order) into tasks (sum 2,846 as P9D's README)
P9D_TEST_PAIRS: tuple[int, ...] = (576, 690, 120, 110, 141, 252, 263, 309, 385)
_P9D_JSON = {k: f"p9d/json/{k}.json" for k in ("train", "test", "query", "gallery")}


def _p9d_items(path: Path, industry: str, image_dir: Path, nested: bool) -> ImageTextDataset:
    """Items of one industry: ``{industry: {id: info}}`` (train) or ``{id: info}`` with
    ``industry_name`` (test, query, gallery); caption = ``title``, category = ``cate_name``."""
    if not path.is_file():
        raise FileNotFoundError(f"P9D file {path} does not exist; see `cl streams check p9d`.")
    data = json.loads(path.read_text(encoding="utf-8"))
    if nested:
        if industry not in data:
            raise ValueError(f"{path} has no industry {industry!r}; it has {sorted(data)}.")
        items = data[industry]
    else:
        unlabelled = [i for i, info in data.items() if "industry_name" not in info]
        if unlabelled:
            raise ValueError(f"{path}: items {unlabelled[:3]} have no 'industry_name'.")
        items = {i: info for i, info in data.items() if info["industry_name"] == industry}
    if not items:
        raise ValueError(f"{path} has no item of industry {industry!r}.")
    for item_id, info in items.items():
        missing = [k for k in ("title", "cate_name") if k not in info]
        if missing:
            raise ValueError(f"{path}: item {item_id!r} has no {missing}; it has {sorted(info)}.")
    ids = tuple(items)
    images = tuple(image_dir / f"{i}.jpg" for i in ids)
    absent = [p for p in images if not p.is_file()]
    if absent:
        raise FileNotFoundError(f"{len(absent)} of {len(images)} images of {industry!r} in {path} "
                                f"are missing under {image_dir}, e.g. {absent[0]}.")
    return ImageTextDataset(images, tuple((items[i]["title"],) for i in ids), ids=ids,
                            categories=tuple(items[i]["cate_name"] for i in ids))


def _p9d_phase(key: str, english: str, test_pairs: int) -> Phase:
    def train(root: Path) -> ImageTextDataset:
        return _p9d_items(Path(root) / _P9D_JSON["train"], key, Path(root) / "p9d/train_images", True)

    def test(root: Path) -> ImageTextDataset:
        return _p9d_items(Path(root) / _P9D_JSON["test"], key, Path(root) / "p9d/gallery_images", False)

    def query_gallery(root: Path) -> tuple[ImageTextDataset, ImageTextDataset]:
        images = Path(root) / "p9d/gallery_images"
        return (_p9d_items(Path(root) / _P9D_JSON["query"], key, images, False),
                _p9d_items(Path(root) / _P9D_JSON["gallery"], key, images, False))

    return Phase(english.lower(), f"P9D industry {english} ({key})", train, test,
                 f"p9d-test-{english.lower()}", (*_P9D_JSON.values(), "p9d/train_images",
                                                 "p9d/gallery_images"),
                 test_pairs, query_gallery)


def p9d(order: Literal["default", "reverse"] = "default") -> ImageTextProtocol:
    """CTP's P9D protocol: 9 industries, class-incremental retrieval (union of seen tasks)."""
    if order not in ("default", "reverse"):
        raise ValueError(f"order must be 'default' or 'reverse', got {order!r}.")
    phases = tuple(_p9d_phase(k, e, n) for (k, e), n in zip(P9D_INDUSTRIES, P9D_TEST_PAIRS, strict=True))
    if order == "reverse":
        phases = phases[::-1]
    paths = (
        ExpectedPath(_P9D_JSON["train"], "file", "training items by industry (1,014,599 pairs)"),
        ExpectedPath(_P9D_JSON["test"], "file", "cross-modal retrieval test items (2,846 pairs)"),
        ExpectedPath(_P9D_JSON["query"], "file", "multimodal retrieval queries (4,615 items)"),
        ExpectedPath(_P9D_JSON["gallery"], "file", "multimodal retrieval gallery (46,855 items)"),
        ExpectedPath("p9d/train_images", "dir", "training images <item_id>.jpg"),
        ExpectedPath("p9d/gallery_images", "dir", "test, query and gallery images <item_id>.jpg"),
    )
    return ImageTextProtocol(
        name="p9d",
        title=f"CTP: P9D, 9 industries ({order} order)",
        paper="Zhu et al., CTP: Towards Vision-Language Continual Pretraining via Compatible "
              "Momentum Contrast and Topology Preservation, ICCV 2023 (arXiv 2308.07146)",
        reference="KevinLight831/CTP@7baab57f23f0b9b552c1eb852a5c6a20208ae76e",
        scenario="class-incremental", phases=phases, paths=paths,
        download="JSON files and image links: https://github.com/KevinLight831/P9D "
                 "(download_images_train.py / download_images_test.py fetch the images; "
                 "zipped images on Baidu Netdisk); about 250 GB",
        scores=("i2t_recall@1", "t2i_recall@1", "mean_recall", "map@1", "map@5", "map@10"),
    )


PROTOCOLS: dict[str, Callable[[], ImageTextProtocol]] = {"coco-flickr": coco_flickr, "p9d": p9d}
