"""User streams from torch datasets, and the dataset views streams are made of.

:func:`from_datasets` turns any ``Dataset`` of ``(image, label)`` pairs into a
stream. :class:`Relabeled` is the view every splitter uses: a subset of a
dataset with its labels mapped to a task's local labels. :func:`dataset_labels`
reads the labels of a dataset without loading its images when the dataset
exposes them (``targets``, ``labels``... as torchvision and avalanche do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Subset

from streams.core import DEFAULT_TEMPLATES, Scenario, Stream, Task, integer_label, integer_labels
from streams.folders import stratified_split

_LABEL_ATTRIBUTES = ("targets", "labels", "_labels", "y")


def dataset_labels(dataset: Dataset, *, load: bool = False) -> np.ndarray | None:
    """Labels of ``dataset`` as an int64 array of shape (N,).

    Read from a ``targets``/``labels``/``_labels``/``y`` attribute (through
    ``Subset``/:class:`Relabeled` views); with ``load=True`` and no such
    attribute, by reading every item (which loads the images). ``None`` when
    unknown and ``load`` is false. Float labels must be integral (``ValueError``
    naming the first that is not).
    """
    if isinstance(dataset, Relabeled):
        return dataset.labels
    if isinstance(dataset, Subset):
        base = dataset_labels(dataset.dataset, load=load)
        return None if base is None else base[np.asarray(dataset.indices, dtype=np.int64)]
    for attr in _LABEL_ATTRIBUTES:
        value = getattr(dataset, attr, None)
        if value is not None and not callable(value):
            try:
                arr = np.asarray(value)
            except (TypeError, ValueError):
                continue
            if arr.ndim == 1 and len(arr) == len(dataset) and arr.dtype.kind in "iuf":
                return integer_labels(arr, f"{type(dataset).__name__}.{attr}")
    samples = getattr(dataset, "_samples", None)  # torchvision StanfordCars: [(path, label)]
    if isinstance(samples, list) and len(samples) == len(dataset) and samples \
            and isinstance(samples[0], tuple):
        return np.asarray([int(s[1]) for s in samples], dtype=np.int64)
    if load:
        return np.asarray([integer_label(dataset[i][1], f"item {i}") for i in range(len(dataset))],
                          dtype=np.int64)
    return None


class Relabeled(Dataset):
    """Items ``indices`` of ``dataset`` with labels replaced by ``labels``.

    Parameters
    ----------
    dataset : Dataset
        Yields ``(image, original_label)`` (extra tuple items are dropped).
    indices : array-like of int, shape (N,)
    labels : array-like of int, shape (N,)
        New (local) label of each selected item.
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int] | np.ndarray,
                 labels: Sequence[int] | np.ndarray) -> None:
        if len(indices) != len(labels):
            raise ValueError(f"{len(indices)} indices but {len(labels)} labels.")
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        item = self.dataset[int(self.indices[index])]
        return item[0], int(self.labels[index])


class LabelChecked(Dataset):
    """``dataset`` whose labels are checked against ``n_classes`` as items are read."""

    def __init__(self, dataset: Dataset, n_classes: int, where: str) -> None:
        self.dataset, self.n_classes, self.where = dataset, n_classes, where

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.dataset[index][:2]
        label = integer_label(label, f"{self.where}: item {index}")
        if not 0 <= label < self.n_classes:
            raise ValueError(
                f"{self.where}: item {index} has label {label}, but only {self.n_classes} class "
                f"names were given (labels must be 0..{self.n_classes - 1})."
            )
        return image, label


def check_labels(dataset: Dataset, n_classes: int, where: str) -> Dataset:
    """``dataset`` if its known labels lie in ``0..n_classes-1``; a :class:`LabelChecked` view if
    its labels are not exposed; ``ValueError`` naming the bad labels otherwise."""
    labels = dataset_labels(dataset)
    if labels is None:
        return LabelChecked(dataset, n_classes, where)
    bad = sorted({int(v) for v in labels if not 0 <= v < n_classes})
    if bad:
        raise ValueError(
            f"{where}: labels {bad[:5]} do not match the {n_classes} class names given "
            f"(labels must be 0..{n_classes - 1}); pass one class name per label."
        )
    return dataset


def from_datasets(
    datasets: Sequence[Dataset | tuple[Dataset, Dataset]],
    *,
    class_names: Sequence[Sequence[str]],
    name: str = "datasets",
    task_names: Sequence[str] | None = None,
    scenario: Scenario = "task-incremental",
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    years: Sequence[int] | None = None,
    test_size: float = 0.2,
    seed: int = 0,
) -> Stream:
    """A stream with one task per dataset.

    Parameters
    ----------
    datasets : sequence, length T
        Each item a ``(train, test)`` pair of datasets, or one dataset that is
        split into train/test per class (``test_size``, ``seed``). Datasets yield
        ``(image, label)`` with ``label`` in ``0..C_t-1``.
    class_names : sequence of sequence of str, length T
        ``class_names[t][c]`` names label ``c`` of task ``t``.
    name : str
        Stream name; task ``t`` is named ``task_names[t]`` or ``f"{name}-{t}"``.
    scenario : {"task-incremental", "class-incremental", "task-agnostic", "domain-incremental"}
    templates : sequence of str
    years : sequence of int, optional
        With years the stream is chronological (stable sort by year).

    Raises
    ------
    ValueError
        Lengths differ, or a dataset's labels do not fit its class names (checked
        now when the dataset exposes ``targets``, else when items are read).
    """
    if class_names and isinstance(class_names[0], str):
        raise TypeError("class_names must be a list of lists (one list of names per dataset).")
    if len(class_names) != len(datasets):
        raise ValueError(f"{len(datasets)} datasets but {len(class_names)} class-name lists; "
                         "give one list of class names per dataset.")
    if task_names is not None and len(task_names) != len(datasets):
        raise ValueError(f"{len(datasets)} datasets but {len(task_names)} task names.")
    if years is not None and len(years) != len(datasets):
        raise ValueError(f"{len(datasets)} datasets but {len(years)} years.")
    tasks = []
    for t, (item, names) in enumerate(zip(datasets, class_names, strict=True)):
        task_name = task_names[t] if task_names is not None else f"{name}-{t}"
        where = f"dataset {t} ({task_name!r})"
        if isinstance(item, tuple):
            if len(item) != 2:
                raise ValueError(f"{where}: expected a (train, test) pair, got {len(item)} items.")
            train = check_labels(item[0], len(names), f"{where} train")
            test = check_labels(item[1], len(names), f"{where} test")
        else:
            labels = dataset_labels(item, load=True)
            check_labels(Relabeled(item, np.arange(len(labels)), labels), len(names), where)
            tr, te = stratified_split(labels, test_size, seed)
            train, test = Relabeled(item, tr, labels[tr]), Relabeled(item, te, labels[te])
        tasks.append(Task(
            name=task_name, class_names=tuple(names),
            load_train=lambda d=train: d, load_test=lambda d=test: d,
            key=f"user:{name}/{t}:{id(train)}:{id(test)}",
            year=None if years is None else int(years[t]), templates=tuple(templates),
            metadata={"source": "user-dataset"},
        ))
    if years is not None:
        return Stream.chronological(name, tasks, scenario)
    return Stream(name, tuple(tasks), scenario)

