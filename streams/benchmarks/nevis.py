"""NEVIS'22: the chronological stream of 106 vision tasks (Bornschein et al. 2023).

"NEVIS'22: A Stream of 100 Tasks Sampled from 30 Years of Computer Vision
Research", JMLR 2023. The FULL (106 tasks), SHORT (29) and TINY (7) streams, in
the reference order with their stream years, task kinds and class counts, are
shipped as data (``streams/benchmarks/data/nevis22_stream.tsv`` and
``nevis22_short_tiny.tsv``, taken from ``deepmind/dm_nevis``,
``dm_nevis/streams/nevis_stream.py``).

Data
----
Each task resolves its data under the data root, in order:

1. a torchvision dataset where one exists (MNIST, CIFAR-10/100, Caltech-101/256,
   Flowers-102, Oxford-IIIT Pets, Stanford Cars, FGVC Aircraft families, DTD,
   Food-101, SUN397, SVHN, STL-10, Fashion-MNIST, EMNIST balanced, USPS, GTSRB,
   PCAM, ImageNet), at torchvision's own sub-folder of ``DATA_ROOT``;
2. an image folder ``DATA_ROOT/nevis/<source>/{train,test}/<class>/*`` that the
   user prepares (``<source>`` is the reference's dataset key, e.g.
   ``magellan_venus_volcanoes``, ``voc_2007``; see ``cl streams check nevis``).

The resolution is decided when the stream is built (directory checks only, no
image is read). A task with neither is *missing*: it stays in the stream and
:func:`streams.check_data` reports it with the expected folder; the runner fails
listing missing tasks or, with ``--skip-missing``, drops and records them.

Class names come from the image folder's class sub-folders, from the known
torchvision class lists, or are placeholders ``"class <i>"`` (count from the
reference) when unknown; where the reference computes the count from the data
and the data is missing, the task has one placeholder class and
``Task.n_classes_known`` is false (shown as "from data").

Dev splits (NEVIS'22 protocol, :mod:`cl.core.selection`): an image folder
with a ``dev/`` sub-folder gives the task its dev split; otherwise the
protocol carves one from the train split with the reference's fractions for
the source (:data:`DEV_FRACTIONS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from streams.benchmarks.mtil import class_names as mtil_class_names
from streams.benchmarks.torchvision_data import SOURCES, TorchvisionSource, load, resolve_root
from streams.core import Stream, Task
from streams.folders import image_folder, list_classes

Variant = Literal["full", "short", "tiny"]
DEV_STOP_YEAR = 2020

#: train / dev / dev-test carve of each source's train split when the task has no ``dev/``
#: folder (dm_nevis ``_dataset_splits_for_tfds``: sources with a validation split 80/20/0,
#: ImageNet 90/5/5, the others 70/15/15; see :mod:`streams.dev`)
DEFAULT_DEV_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)
DEV_FRACTIONS: dict[str, tuple[float, float, float]] = {
    **dict.fromkeys(("tfds:dtd", "tfds:oxford_flowers102", "tfds:voc/2007",
                     "tfds:patch_camelyon", "tfds:sun397", "tfds:celeb_a"), (0.8, 0.2, 0.0)),
    "tfds:imagenet2012": (0.9, 0.05, 0.05),
}

#: reference dataset key -> torchvision source (see :mod:`streams.benchmarks.torchvision_data`)
NEVIS_TORCHVISION: dict[str, str] = {
    "mnist": "mnist", "caltech101": "caltech101", "oxford_flowers102": "flowers102",
    "cifar10": "cifar10", "cifar100": "cifar100", "stanford_cars": "stanford_cars",
    "fgvc_aircraft_family": "fgvc_aircraft_family", "dtd": "dtd",
    "oxford_iiit_pet": "oxford_iiit_pet", "svhn_cropped": "svhn", "emnist_balanced": "emnist_balanced",
    "fashion_mnist": "fashion_mnist", "stl10": "stl10", "food101": "food101", "usps": "usps",
    "german_tsr": "gtsrb", "patch_camelyon": "pcam", "sun397": "sun397", "caltech256": "caltech256",
    "imagenet2012": "imagenet",
}
_DIGITS = tuple(str(i) for i in range(10))
_MTIL_NAMES = {"caltech101": "Caltech101", "cifar100": "CIFAR100", "dtd": "DTD",
               "flowers102": "Flowers", "food101": "Food", "oxford_iiit_pet": "OxfordPet",
               "stanford_cars": "StanfordCars", "sun397": "SUN397"}
_KNOWN_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": _DIGITS, "svhn": _DIGITS, "usps": _DIGITS,
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
    "stl10": ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
}


@dataclass(frozen=True)
class NevisEntry:
    """One row of a NEVIS'22 stream definition.

    Attributes
    ----------
    position : int
        1-based position in its variant.
    dataset_name : str
        Name as the reference spells it.
    year : int
        Stream year (differs between variants for the same dataset).
    task_kind : str
        ``"CLASSIFICATION"`` or ``"MULTI_LABEL_CLASSIFICATION"``.
    num_classes : int or None
        Reference class count; ``None`` where the reference computes it from data.
    source : str
        ``tfds:NAME`` or ``nevis:NAME`` in the reference.
    """

    position: int
    dataset_name: str
    year: int
    task_kind: str
    num_classes: int | None
    source: str

    @property
    def source_key(self) -> str:
        """Folder name of the task's data: the reference key with ``/`` as ``_``."""
        return self.source.split(":", 1)[1].replace("/", "_")

    @property
    def multi_label(self) -> bool:
        return self.task_kind == "MULTI_LABEL_CLASSIFICATION"

    @property
    def task_name(self) -> str:
        return f"{self.dataset_name} ({self.year})"


def _rows(filename: str) -> list[dict[str, str]]:
    text = resources.files("streams.benchmarks").joinpath("data", filename).read_text(encoding="utf-8")
    lines = [line.split("\t") for line in text.splitlines() if line]
    return [dict(zip(lines[0], row, strict=True)) for row in lines[1:]]


@cache
def nevis_entries(variant: Variant = "full") -> tuple[NevisEntry, ...]:
    """The ordered entries of a NEVIS'22 variant (all years)."""
    full = tuple(
        NevisEntry(int(r["position"]), r["dataset_name"], int(r["year"]), r["task_kind"],
                   int(r["num_classes"]) if r["num_classes"] else None, r["source"])
        for r in _rows("nevis22_stream.tsv")
    )
    if variant == "full":
        return full
    if variant not in ("short", "tiny"):
        raise ValueError(f"unknown NEVIS variant {variant!r}; valid: full, short, tiny.")
    first = {}
    for e in full:
        first.setdefault(e.dataset_name, e)
    out = []
    for r in _rows("nevis22_short_tiny.tsv"):
        if r["variant"].lower() != variant:
            continue
        ref = first[r["dataset_name"]]
        out.append(NevisEntry(int(r["position"]), ref.dataset_name, int(r["year"]), ref.task_kind,
                              ref.num_classes, ref.source))
    return tuple(out)


def _torchvision_names(source: TorchvisionSource) -> tuple[str, ...]:
    if source.name in _KNOWN_NAMES:
        return _KNOWN_NAMES[source.name]
    if source.name in _MTIL_NAMES:
        return mtil_class_names(_MTIL_NAMES[source.name])
    return tuple(f"class {i}" for i in range(source.n_classes))


def _task(entry: NevisEntry, root: Path, variant: str, download: bool) -> Task:
    folder = root / "nevis" / entry.source_key
    tv_name = None if entry.multi_label else NEVIS_TORCHVISION.get(entry.source_key)
    source = SOURCES[tv_name] if tv_name else None
    meta = {"position": entry.position, "dataset_name": entry.dataset_name,
            "task_kind": entry.task_kind, "source": entry.source,
            "num_classes_reference": entry.num_classes, "image_folder": str(folder),
            "dev_fractions": DEV_FRACTIONS.get(entry.source, DEFAULT_DEV_FRACTIONS)}
    load_dev = None
    if source is not None and (source.is_present(root) or download):
        where, names = str(source.expected_path(root)), _torchvision_names(source)

        def load_train():
            return load(source, root, "train", download=download)

        def load_test():
            return load(source, root, "test", download=download)

        resolution, detail = "torchvision", f"torchvision {source.dataset}"
    elif (folder / "train").is_dir() and (folder / "test").is_dir():
        where, names = str(folder), list_classes(folder / "train")

        def load_train():
            return image_folder(folder / "train", names)

        def load_test():
            return image_folder(folder / "test", names)

        if (folder / "dev").is_dir():  # the reference's own dev split, when prepared

            def load_dev():
                return image_folder(folder / "dev", names)

        resolution, detail = "image-folder", "image folder"
    else:
        where = str(folder) + (f" or {source.expected_path(root)}" if source else "")
        n = entry.num_classes or (source.n_classes if source else None)
        names = tuple(f"class {i}" for i in range(n)) if n else ("unknown",)
        meta["n_classes_known"] = n is not None

        def load_train():
            raise FileNotFoundError(f"NEVIS task {entry.task_name!r} has no data; expected {where}.")

        load_test = load_train
        resolution = "missing"
        detail = "missing: prepare train/ and test/ image folders" + (
            f" (or torchvision {source.dataset})" if source else "")
    path = Path(where.split(" or ")[0])

    def data_check() -> tuple[bool, str | None, str]:
        if resolution == "missing":
            return False, None, detail
        if path.exists() or download:
            return True, str(path), detail
        return False, None, f"{detail} no longer at {path}"

    return Task(
        name=entry.task_name, class_names=names, load_train=load_train, load_test=load_test,
        key=f"nevis:{entry.source}:{resolution}:{path.resolve()}",
        year=entry.year,
        metadata=meta | {"resolution": resolution, "expected_path": where, "data_check": data_check,
                         "variant": variant},
        load_dev=load_dev,
    )


def nevis(
    *,
    variant: Literal["full", "short", "tiny"] = "full",
    stop_year: int | None = DEV_STOP_YEAR,
    single_label_only: bool = False,
    download: bool = False,
    data_root: str | None = None,
) -> Stream:
    """The NEVIS'22 stream, task-incremental, in reference order.

    Parameters
    ----------
    variant : {"full", "short", "tiny"}
        FULL (106 tasks), SHORT (29) or TINY (7).
    stop_year : int or None
        Keep tasks with ``year < stop_year``; the default 2020 is the reference's
        development stream, ``None`` keeps all years.
    single_label_only : bool
        Drop the multi-label tasks (their names go to ``metadata["dropped_multi_label"]``).
    download : bool
        Let torchvision download the datasets it provides (needs network).
    data_root : str or None
        Reserved: the runner's ``--data-root`` (``./data`` when ``None``).
    """
    root = resolve_root(data_root)
    entries = [e for e in nevis_entries(variant) if stop_year is None or e.year < stop_year]
    dropped = [e.task_name for e in entries if e.multi_label] if single_label_only else []
    entries = [e for e in entries if not (single_label_only and e.multi_label)]
    if not entries:
        raise ValueError(f"no NEVIS {variant} task has a year before stop_year={stop_year}.")
    tasks = tuple(_task(e, root, variant, download) for e in entries)
    name = "nevis" if variant == "full" else f"nevis-{variant}"
    meta = {"variant": variant, "stop_year": stop_year, "dropped_multi_label": dropped}
    return Stream(name, tasks, "task-incremental", meta)


def nevis_short(*, stop_year: int | None = DEV_STOP_YEAR, single_label_only: bool = False,
                download: bool = False, data_root: str | None = None) -> Stream:
    """NEVIS'22 SHORT (29 tasks); options as :func:`nevis`."""
    return nevis(variant="short", stop_year=stop_year, single_label_only=single_label_only,
                 download=download, data_root=data_root)


def nevis_tiny(*, stop_year: int | None = DEV_STOP_YEAR, single_label_only: bool = False,
               download: bool = False, data_root: str | None = None) -> Stream:
    """NEVIS'22 TINY (7 tasks); options as :func:`nevis`."""
    return nevis(variant="tiny", stop_year=stop_year, single_label_only=single_label_only,
                 download=download, data_root=data_root)
