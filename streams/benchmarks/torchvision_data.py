"""torchvision datasets as task data, under one data root.

Each :class:`TorchvisionSource` names a ``torchvision.datasets`` class, the
keyword arguments of its train and test splits, and the marker path torchvision
creates under the data root (used to tell whether the data is present without
loading it). Datasets without an official test split (Caltech-101/256,
EuroSAT, SUN397) are split 80/20 with ``torch.utils.data.random_split`` and a
generator seeded with 42, as the MTIL reference code does (ZSCL, Zheng et al.
2023, ``ClassificationDataset.split_dataset``).

Offline, ``download=False`` (the default) and missing files raise
``FileNotFoundError`` naming the expected path and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, random_split

SPLIT_SEED = 42
SPLIT_TRAIN_FRACTION = 0.8


@dataclass(frozen=True)
class TorchvisionSource:
    """How to build one torchvision dataset.

    Attributes
    ----------
    name : str
        Our identifier (``"cifar100"``).
    dataset : str
        Class name in ``torchvision.datasets``.
    marker : str
        Path under the data root that exists once the data is there.
    n_classes : int
        Number of classes the dataset must have.
    train, test : dict
        Split keyword arguments; ``test`` is ``None`` for datasets split 80/20.
    common : dict
        Keyword arguments of both splits.
    """

    name: str
    dataset: str
    marker: str
    n_classes: int
    train: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] | None = None
    common: dict[str, Any] = field(default_factory=dict)

    def expected_path(self, root: str | os.PathLike[str]) -> Path:
        return Path(root) / self.marker

    def is_present(self, root: str | os.PathLike[str]) -> bool:
        return self.expected_path(root).exists()


def _src(name: str, dataset: str, marker: str, n: int, train: dict[str, Any],
         test: dict[str, Any] | None, **common: Any) -> TorchvisionSource:
    return TorchvisionSource(name, dataset, marker, n, train, test, common)


_TRAIN, _TEST = {"train": True}, {"train": False}
SOURCES: dict[str, TorchvisionSource] = {s.name: s for s in (
    _src("mnist", "MNIST", "MNIST/raw", 10, _TRAIN, _TEST),
    _src("fashion_mnist", "FashionMNIST", "FashionMNIST/raw", 10, _TRAIN, _TEST),
    _src("emnist_balanced", "EMNIST", "EMNIST/raw", 47, _TRAIN, _TEST, split="balanced"),
    _src("cifar10", "CIFAR10", "cifar-10-batches-py", 10, _TRAIN, _TEST),
    _src("cifar100", "CIFAR100", "cifar-100-python", 100, _TRAIN, _TEST),
    _src("caltech101", "Caltech101", "caltech101/101_ObjectCategories", 101, {}, None),
    _src("caltech256", "Caltech256", "caltech256/256_ObjectCategories", 257, {}, None),
    _src("flowers102", "Flowers102", "flowers-102", 102, {"split": "train"}, {"split": "test"}),
    _src("oxford_iiit_pet", "OxfordIIITPet", "oxford-iiit-pet", 37,
         {"split": "trainval"}, {"split": "test"}),
    _src("stanford_cars", "StanfordCars", "stanford_cars", 196, {"split": "train"}, {"split": "test"}),
    _src("fgvc_aircraft", "FGVCAircraft", "fgvc-aircraft-2013b", 100,
         {"split": "train"}, {"split": "test"}),
    _src("fgvc_aircraft_family", "FGVCAircraft", "fgvc-aircraft-2013b", 70,
         {"split": "trainval"}, {"split": "test"}, annotation_level="family"),
    _src("dtd", "DTD", "dtd/dtd", 47, {"split": "train"}, {"split": "test"}),
    _src("food101", "Food101", "food-101", 101, {"split": "train"}, {"split": "test"}),
    _src("sun397", "SUN397", "SUN397", 397, {}, None),
    _src("eurosat", "EuroSAT", "eurosat/2750", 10, {}, None),
    _src("svhn", "SVHN", "train_32x32.mat", 10, {"split": "train"}, {"split": "test"}),
    _src("stl10", "STL10", "stl10_binary", 10, {"split": "train"}, {"split": "test"}),
    _src("usps", "USPS", "usps.bz2", 10, _TRAIN, _TEST),
    _src("gtsrb", "GTSRB", "gtsrb/GTSRB", 43, {"split": "train"}, {"split": "test"}),
    _src("pcam", "PCAM", "pcam", 2, {"split": "train"}, {"split": "test"}),
    _src("imagenet", "ImageNet", "ILSVRC2012_devkit_t12.tar.gz", 1000,
         {"split": "train"}, {"split": "val"}),
)}


def _num_classes(ds: Dataset) -> int | None:
    for attr in ("classes", "categories"):
        value = getattr(ds, attr, None)
        if value is not None:
            return len(value)
    return None


def load(source: TorchvisionSource, root: str | os.PathLike[str], split: str, *,
         download: bool = False) -> Dataset:
    """The ``split`` (``"train"``/``"test"``) of ``source`` under ``root``.

    Raises
    ------
    FileNotFoundError
        The data is not under ``root`` and ``download`` is false, or the download failed.
    ValueError
        The dataset does not have ``source.n_classes`` classes (wrong files or version).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    import torchvision.datasets as tvd

    cls = getattr(tvd, source.dataset)
    kwargs = dict(source.common)
    kwargs.update(source.train if (split == "train" or source.test is None) else source.test)
    try:
        ds = cls(str(root), download=download, **kwargs)
    except (RuntimeError, FileNotFoundError, OSError) as err:
        how = ("the download failed (offline?); place the files there by hand"
               if download else "download it with --set stream.download=true, or place it there")
        raise FileNotFoundError(
            f"torchvision {source.dataset} not found at {str(source.expected_path(root))!r}: "
            f"{how}. ({err.__class__.__name__}: {err})"
        ) from err
    found = _num_classes(ds)
    if found is not None and found != source.n_classes:
        raise ValueError(
            f"torchvision {source.dataset} under {str(root)!r} has {found} classes, expected "
            f"{source.n_classes}; the class names would not match its labels."
        )
    if source.test is not None:
        return ds
    n_train = int(SPLIT_TRAIN_FRACTION * len(ds))
    train, test = random_split(ds, [n_train, len(ds) - n_train],
                               generator=torch.Generator().manual_seed(SPLIT_SEED))
    return train if split == "train" else test


def data_check(source: TorchvisionSource, root: str | os.PathLike[str],
               *, download: bool = False):
    """A ``metadata["data_check"]`` callable for ``source`` under ``root``."""

    def check() -> tuple[bool, str | None, str]:
        path = source.expected_path(root)
        if path.exists():
            return True, str(path), f"torchvision {source.dataset}"
        if download:
            return True, None, f"torchvision {source.dataset} (will download)"
        return False, None, f"torchvision {source.dataset} not found"

    return check


def download_hint(sources: Sequence[TorchvisionSource], download: bool) -> str:
    """The missing-data hint of a stream over ``sources`` (:data:`streams.availability.DATA_HINT`)."""
    names = ", ".join(dict.fromkeys(f"torchvision.datasets.{s.dataset}" for s in sources))
    if download:
        return (f"Sources: {names}; stream.download is on, so torchvision downloads them when "
                "a task loads (needs network).")
    return (f"Sources: {names}. Rerun with --set stream.download=true to let torchvision download "
            "them into the data root (needs network), or place them at the paths above (each "
            "dataset's page in the torchvision documentation names its files).")


def resolve_root(data_root: str | os.PathLike[str] | None) -> Path:
    """The data root (``./data`` when ``None``); ``FileNotFoundError`` when it does not exist."""
    root = Path("data" if data_root is None else data_root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data root {str(root)!r} does not exist; create it or pass --data-root DIR."
        )
    return root
