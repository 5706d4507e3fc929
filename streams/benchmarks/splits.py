"""Class-incremental splits: one dataset's classes cut into tasks.

``split-cifar100`` (torchvision CIFAR-100), ``split-imagenet-r`` (an image
folder ``DATA_ROOT/imagenet-r/<class>/*``) and ``split-folder`` (any image
folder a user has). Classes are ordered by ``class_order_seed`` and cut into
``n_tasks`` consecutive groups (``numpy.array_split``: sizes differ by at most
one). Every task is scored on all classes seen so far (class-incremental).

Class order: ``None`` keeps the dataset's order; an integer ``s`` gives
``numpy.random.RandomState(s).permutation(C)``, the convention of iCaRL/PyCIL
(``np.random.seed(1993); np.random.permutation(C)``), so ``class_order_seed=1993``
is the common "seed-1993" CIFAR-100 order; a list of class ids is an explicit order
(a repository's published order); ``"run"`` makes ``cl run`` use the run seed, so each
seed of ``--seeds`` draws its own order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Literal

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
from streams.folders import (
    ImageFileDataset,
    check_modes,
    list_classes,
    list_images,
    split_classes,
    stratified_split,
)

#: what ``class_order_seed`` accepts: a seed, ``"run"`` (the run seed, resolved by ``cl run``),
#: an explicit order of class ids, or ``None`` (natural order)
ClassOrder = int | Literal["run"] | list[int] | None


def class_order(n_classes: int, seed: ClassOrder) -> list[int]:
    """Class indices in natural order (``seed=None``), ``RandomState(seed).permutation``
    (an integer), or as given (a list: each of ``0..n_classes-1`` once).

    Raises
    ------
    ValueError
        ``"run"`` (only a run config can resolve it to the run seed), or a list that is not
        a permutation of the class ids.
    """
    if isinstance(seed, str):
        raise ValueError(  # noqa: TRY004 - "run" is a valid value in the wrong place, not a type
            f"class_order_seed={seed!r}: 'run' draws the class order from the run seed and is "
            "resolved by cl run (stream.class_order_seed = \"run\" in a config); from Python "
            "pass the seed itself.")
    if isinstance(seed, (list, tuple)):
        order = [int(c) for c in seed]
        if sorted(order) != list(range(n_classes)):
            raise ValueError(f"class_order_seed as an explicit order must list each class id "
                             f"0..{n_classes - 1} exactly once, got {list(seed)!r}.")
        return order
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
    class_order_seed: ClassOrder = 1993,
    download: bool = False,
    data_root: str | None = None,
) -> Stream:
    """CIFAR-100 in ``n_tasks`` class-incremental tasks (10 or 20 are usual).

    Parameters
    ----------
    n_tasks : int
        Number of tasks (1..100).
    class_order_seed : int, "run", list of int or None
        1993 (default) is the common iCaRL/PyCIL order; ``None`` the natural order;
        ``"run"`` the run seed (resolved by ``cl run``); a list, an explicit order.
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


def _folder_split_stream(name: str, root: Path, n_tasks: int, class_order_seed: ClassOrder,
                         test_size: float, seed: int, known_classes: int | None = None,
                         allow_mixed_modes: bool = False) -> Stream:
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
    if has_splits and (test_size, seed) != (0.2, 0):
        option = "test_size" if test_size != 0.2 else "seed"
        raise ValueError(f"{name} option {option!r} splits a single image folder, but "
                         f"{str(root)!r} has train/ and test/, which are used as they are; "
                         f"leave {option!r} out.")
    if root.is_dir():
        names = split_classes(root) if has_splits else list_classes(root)
    else:
        names = tuple(f"class-{i}" for i in range(known_classes or 0))
    order = class_order(len(names), class_order_seed)
    groups = task_classes(order, n_tasks)

    def load_split(split: str, classes: tuple[int, ...]) -> Dataset:
        subset = [names[c] for c in classes]
        if has_splits:
            paths, labels, _ = list_images(root / split, subset)
            check_modes(paths, root / split, allow=allow_mixed_modes)
            return ImageFileDataset(paths, labels)
        paths, labels, _ = list_images(root, subset)
        check_modes(paths, root, allow=allow_mixed_modes)
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
    class_order_seed: ClassOrder = None,
    test_size: float = 0.2,
    seed: int = 0,
    allow_mixed_modes: bool = False,
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
    class_order_seed : int, "run", list of int or None
        See :func:`class_order`.
    test_size : float
    seed : int
    allow_mixed_modes : bool
        Accept images of several colour modes (converted to RGB, one warning per folder);
        by default such a folder is refused, naming the modes (:func:`streams.folders.check_modes`).
    data_root : str or None
        Reserved (unused: ``root`` says where the data is).
    """
    return _folder_split_stream("split-folder", Path(root), n_tasks, class_order_seed,
                                test_size, seed, allow_mixed_modes=allow_mixed_modes)


IMAGENET_R_CLASSES = 200
"""ImageNet-R's class count (Hendrycks et al. 2021): 200 ImageNet classes in renditions."""


def split_imagenet_r(
    *,
    n_tasks: int = 10,
    class_order_seed: ClassOrder = 1993,
    test_size: float = 0.2,
    seed: int = 0,
    data_root: str | None = None,
) -> Stream:
    """ImageNet-R (200 classes) from ``DATA_ROOT/imagenet-r/<class>/*``, class-incremental.

    ImageNet-R has no official train/test split: each class is split with
    ``test_size`` and ``seed`` (80/20 by default). Class names are the folder
    names (rename the folders to readable names for zero-shot prompts). Without
    the folder the stream is still defined (placeholder names, reported missing).
    Its greyscale JPEGs are converted to RGB with the colour ones, as torchvision's
    ``ImageFolder`` (used by L2P, CODA-Prompt) does, with one warning.
    """
    root = resolve_root(data_root) / "imagenet-r"
    return _folder_split_stream("split-imagenet-r", root, n_tasks, class_order_seed,
                                test_size, seed, known_classes=IMAGENET_R_CLASSES,
                                allow_mixed_modes=True)
