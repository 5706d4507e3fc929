"""X-TAIL: cross-domain task-agnostic incremental learning (RAIL, Xu et al. 2024).

"Advancing Cross-domain Discriminability in Continual Learning of
Vision-Language Models", NeurIPS 2024. Ten of the MTIL datasets (CIFAR100 is
left out for its overlap with the others) in the reference configuration's
order: Aircraft, Caltech101, DTD, EuroSAT, Flowers, Food, MNIST, OxfordPet,
StanfordCars, SUN397. Every test image is classified over the union of all
classes of all domains, without a domain hint (``"task-agnostic"``), with the
single template ``"a photo of a {}."``; training is ``n_shots``-shot per class
(16 in the reference).

Few-shot sampling: ``n_shots`` images per class drawn without replacement with
``numpy.random.default_rng(seed)`` (all images of a class with fewer). The
reference samples with replacement for such classes; we do not duplicate images.
Class names are the MTIL ones (:mod:`streams.benchmarks.mtil`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from streams.availability import DATA_HINT
from streams.benchmarks.mtil import TORCHVISION_NAME, torchvision_task
from streams.benchmarks.torchvision_data import SOURCES, download_hint, resolve_root
from streams.core import Stream, Task
from streams.datasets import Relabeled, dataset_labels

XTAIL_ORDER: tuple[str, ...] = (
    "Aircraft", "Caltech101", "DTD", "EuroSAT", "Flowers", "Food", "MNIST", "OxfordPet",
    "StanfordCars", "SUN397",
)
XTAIL_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)


def few_shot(dataset: Dataset, n_shots: int, seed: int) -> Relabeled:
    """``n_shots`` items per class of ``dataset`` (all of a smaller class), seeded.

    Returns
    -------
    Relabeled
        The selected items, in increasing index order, with their own labels.
    """
    if n_shots <= 0:
        raise ValueError(f"n_shots must be positive, got {n_shots}.")
    labels = dataset_labels(dataset, load=True)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        chosen.append(rng.choice(idx, size=min(n_shots, len(idx)), replace=False))
    keep = np.sort(np.concatenate(chosen))
    return Relabeled(dataset, keep, labels[keep])


def _few_shot_task(task: Task, n_shots: int, seed: int) -> Task:
    base_train = task.load_train
    return Task(
        name=task.name, class_names=task.class_names,
        load_train=lambda: few_shot(base_train(), n_shots, seed),
        load_test=task.load_test, key=f"{task.key}:shots={n_shots}:seed={seed}",
        templates=task.templates, metadata=dict(task.metadata) | {"n_shots": n_shots},
    )


def xtail(
    *,
    n_shots: int | None = 16,
    seed: int = 42,
    download: bool = False,
    data_root: str | None = None,
) -> Stream:
    """X-TAIL over 10 torchvision datasets, scored on the union of all classes.

    Parameters
    ----------
    n_shots : int or None
        Training images per class (``None``: the full training split).
    seed : int
        Seed of the few-shot sampling.
    download : bool
        Let torchvision download missing datasets (needs network).
    data_root : str or None
        Reserved: the runner's ``--data-root`` (``./data`` when ``None``).
    """
    if n_shots is not None and n_shots <= 0:
        raise ValueError(f"n_shots must be a positive integer or None, got {n_shots}.")
    root: Path = resolve_root(data_root)
    tasks = []
    for d in XTAIL_ORDER:
        task = torchvision_task(d, root, download=download, prompt_templates=XTAIL_TEMPLATES,
                                key_prefix="xtail")
        tasks.append(task if n_shots is None else _few_shot_task(task, n_shots, seed))
    hint = download_hint([SOURCES[TORCHVISION_NAME[d]] for d in XTAIL_ORDER], download)
    return Stream("x-tail", tuple(tasks), "task-agnostic",
                  {"n_shots": n_shots, "seed": seed, DATA_HINT: hint})
