"""Class-incremental splits: one dataset's classes cut into tasks.

``split-cifar100`` (torchvision CIFAR-100), ``split-imagenet-r`` (an image
folder ``DATA_ROOT/imagenet-r/<class>/*``) and ``split-folder`` (any image
folder a user has). Classes are ordered by ``class_order_seed`` and cut into
``n_tasks`` consecutive groups (``numpy.array_split``: sizes differ by at most
one). Every task is scored on all classes seen so far (class-incremental).

Class order: ``None`` keeps the dataset's order; an integer ``s`` gives
``numpy.random.RandomState(s).permutation(C)``, the convention of iCaRL/PyCIL
(``np.random.seed(1993); np.random.permutation(C)``), so ``class_order_seed=1993``
is the common "seed-1993" CIFAR-100 order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from streams.availability import DATA_HINT
from streams.benchmarks.mtil import class_names as mtil_class_names
from streams.benchmarks.mtil import templates as mtil_templates
from streams.benchmarks.torchvision_data import (
    SOURCES,
    data_check,
    download_hint,
    load,
    resolve_root,
)
from streams.core import DEFAULT_TEMPLATES, Stream, Task
from streams.datasets import Relabeled, dataset_labels
from streams.folders import ImageFileDataset, list_classes, list_images, stratified_split


def class_order(n_classes: int, seed: int | None) -> list[int]:
    """Class indices in natural order (``seed=None``) or ``RandomState(seed).permutation``."""
    if seed is None:
        return list(range(n_classes))
    return [int(c) for c in np.random.RandomState(seed).permutation(n_classes)]


def task_classes(order: Sequence[int], n_tasks: int) -> list[tuple[int, ...]]:
    """``order`` cut into ``n_tasks`` consecutive groups (``ValueError`` if more tasks than classes)."""
    if not 1 <= n_tasks <= len(order):
        raise ValueError(f"n_tasks must be between 1 and the number of classes ({len(order)}), "
                         f"got {n_tasks}.")
    return [tuple(int(c) for c in g) for g in np.array_split(np.asarray(order), n_tasks)]


def _subset(base: Dataset, labels: np.ndarray, classes: tuple[int, ...]) -> Relabeled:
    mapping = np.full(int(labels.max()) + 1, -1, dtype=np.int64)
    mapping[list(classes)] = np.arange(len(classes))
    idx = np.flatnonzero(np.isin(labels, classes))
    return Relabeled(base, idx, mapping[labels[idx]])


def split_tasks(
    stream: str,
    names: Sequence[str],
    groups: list[tuple[int, ...]],
    load_split: Callable[[str, tuple[int, ...]], Dataset],
    *,
    key: str,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    metadata: dict | None = None,
) -> tuple[Task, ...]:
    """One task per class group; ``load_split(split, classes)`` builds its data with local labels."""
    return tuple(
        Task(
            name=f"{stream}-{i:02d}",
            class_names=tuple(names[c] for c in g),
            load_train=lambda g=g: load_split("train", g),
            load_test=lambda g=g: load_split("test", g),
            key=f"{key}/task{i}",
            templates=tuple(templates),
            metadata=(metadata or {}) | {"classes": list(g)},
        )
        for i, g in enumerate(groups)
    )


def split_cifar100(
    *,
    n_tasks: int = 10,
    class_order_seed: int | None = 1993,
    download: bool = False,
    data_root: str | None = None,
) -> Stream:
    """CIFAR-100 in ``n_tasks`` class-incremental tasks (10 or 20 are usual).

    Parameters
    ----------
    n_tasks : int
        Number of tasks (1..100).
    class_order_seed : int or None
        1993 (default) is the common iCaRL/PyCIL order; ``None`` the natural order.
    download : bool
        Let torchvision download CIFAR-100 (needs network).
    data_root : str or None
        Reserved: the runner's ``--data-root`` (``./data`` when ``None``).
    """
    root = resolve_root(data_root)
    source = SOURCES["cifar100"]
    order = class_order(100, class_order_seed)
    groups = task_classes(order, n_tasks)

    @cache
    def base(split: str) -> tuple[Dataset, np.ndarray]:
        ds = load(source, root, split, download=download)
        return ds, dataset_labels(ds, load=True)

    def load_split(split: str, classes: tuple[int, ...]) -> Dataset:
        ds, labels = base(split)
        return _subset(ds, labels, classes)

    meta = {"expected_path": str(source.expected_path(root)),
            "data_check": data_check(source, root, download=download)}
    tasks = split_tasks("split-cifar100", mtil_class_names("CIFAR100"), groups, load_split,
                        key=f"split-cifar100:{root.resolve()}:order={class_order_seed}",
                        templates=mtil_templates("CIFAR100"), metadata=meta)
    return Stream("split-cifar100", tasks, "class-incremental",
                  {"class_order": order, DATA_HINT: download_hint([source], download)})


def _folder_split_stream(name: str, root: Path, n_tasks: int, class_order_seed: int | None,
                         test_size: float, seed: int, known_classes: int | None = None) -> Stream:
    """Class-incremental tasks of an image folder.

    With ``known_classes`` (a dataset whose class count is fixed, as ImageNet-R's
    200) a missing folder still defines the stream, with placeholder class names,
    so plans and ``--dry-run`` work and ``cl streams check`` reports it missing;
    any folder of user data must exist.
    """
    if not root.is_dir() and known_classes is None:
        raise FileNotFoundError(
            f"image folder {str(root)!r} does not exist; expected {root}/<class>/<images> "
            f"or {root}/train/<class>/... and {root}/test/<class>/...")
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    if root.is_dir():
        names = list_classes(root / "train" if has_splits else root)
    else:
        names = tuple(f"class-{i}" for i in range(known_classes or 0))
    order = class_order(len(names), class_order_seed)
    groups = task_classes(order, n_tasks)

    def load_split(split: str, classes: tuple[int, ...]) -> Dataset:
        subset = [names[c] for c in classes]
        if has_splits:
            paths, labels, _ = list_images(root / split, subset)
            return ImageFileDataset(paths, labels)
        paths, labels, _ = list_images(root, subset)
        idx = stratified_split(labels, test_size, seed)[0 if split == "train" else 1]
        return ImageFileDataset([paths[i] for i in idx], labels[idx])

    def check() -> tuple[bool, str | None, str]:
        ok = root.is_dir()
        return ok, str(root) if ok else None, "image folder" if ok else "image folder not found"

    ident = f"{name}:{root.resolve()}:order={class_order_seed}"
    if not has_splits:
        ident += f":test_size={test_size}:seed={seed}"
    meta = {"expected_path": str(root), "data_check": check}
    tasks = split_tasks(name, names, groups, load_split, key=ident, metadata=meta)
    return Stream(name, tasks, "class-incremental", {"class_order": order, "root": str(root)})


def split_folder(
    *,
    root: str,
    n_tasks: int = 5,
    class_order_seed: int | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    data_root: str | None = None,
) -> Stream:
    """Any image folder cut into ``n_tasks`` class-incremental tasks.

    Parameters
    ----------
    root : str
        ``root/<class>/<images>`` (split per class with ``test_size``, ``seed``), or
        ``root/train/<class>/...`` and ``root/test/<class>/...``. A relative path
        is looked up in the working directory.
    n_tasks : int
    class_order_seed : int or None
    test_size : float
    seed : int
    data_root : str or None
        Reserved (unused: ``root`` says where the data is).
    """
    return _folder_split_stream("split-folder", Path(root), n_tasks, class_order_seed,
                                test_size, seed)


IMAGENET_R_CLASSES = 200
"""ImageNet-R's class count (Hendrycks et al. 2021): 200 ImageNet classes in renditions."""


def split_imagenet_r(
    *,
    n_tasks: int = 10,
    class_order_seed: int | None = 1993,
    test_size: float = 0.2,
    seed: int = 0,
    data_root: str | None = None,
) -> Stream:
    """ImageNet-R (200 classes) from ``DATA_ROOT/imagenet-r/<class>/*``, class-incremental.

    ImageNet-R has no official train/test split: each class is split with
    ``test_size`` and ``seed`` (80/20 by default). Class names are the folder
    names (rename the folders to readable names for zero-shot prompts). Without
    the folder the stream is still defined (placeholder names, reported missing).
    """
    root = resolve_root(data_root) / "imagenet-r"
    return _folder_split_stream("split-imagenet-r", root, n_tasks, class_order_seed,
                                test_size, seed, known_classes=IMAGENET_R_CLASSES)
