"""MTIL: multi-domain task-incremental learning over 11 datasets (ZSCL, Zheng et al. 2023).

"Preventing Zero-Shot Transfer Degradation in Continual Learning of
Vision-Language Models", ICCV 2023. Two orders of the same 11 datasets:

- Order I: Aircraft, Caltech101, CIFAR100, DTD, EuroSAT, Flowers, Food, MNIST,
  OxfordPet, StanfordCars, SUN397 (the reference scripts' ``dataset=(...)``);
- Order II: StanfordCars, Food, MNIST, OxfordPet, Flowers, SUN397, Aircraft,
  Caltech101, DTD, EuroSAT, CIFAR100.

Each task is scored on its own classes (task-incremental). Class names and
prompt templates are the reference's (``mtil/src/datasets/collections.py``:
torchvision class names with ``_`` replaced by spaces, or its hand-written lists
for Caltech101, EuroSAT and Flowers), shipped as data in
``streams/benchmarks/data/mtil_classnames.tsv`` and ``mtil_templates.tsv``. Caltech101,
EuroSAT and SUN397 are split 80/20 with seed 42 as the reference does.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from streams.availability import DATA_HINT
from streams.benchmarks.torchvision_data import (
    SOURCES,
    data_check,
    download_hint,
    load,
    resolve_root,
)
from streams.core import Stream, Task

MTIL_ORDER_I: tuple[str, ...] = (
    "Aircraft", "Caltech101", "CIFAR100", "DTD", "EuroSAT", "Flowers", "Food", "MNIST",
    "OxfordPet", "StanfordCars", "SUN397",
)
MTIL_ORDER_II: tuple[str, ...] = (
    "StanfordCars", "Food", "MNIST", "OxfordPet", "Flowers", "SUN397", "Aircraft", "Caltech101",
    "DTD", "EuroSAT", "CIFAR100",
)
TORCHVISION_NAME: dict[str, str] = {
    "Aircraft": "fgvc_aircraft", "Caltech101": "caltech101", "CIFAR100": "cifar100", "DTD": "dtd",
    "EuroSAT": "eurosat", "Flowers": "flowers102", "Food": "food101", "MNIST": "mnist",
    "OxfordPet": "oxford_iiit_pet", "StanfordCars": "stanford_cars", "SUN397": "sun397",
}


def _read_tsv(filename: str) -> list[list[str]]:
    text = resources.files("streams.benchmarks").joinpath("data", filename).read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line]
    return rows[1:]


@cache
def class_names(dataset: str) -> tuple[str, ...]:
    """The reference class names of an MTIL dataset, in label order."""
    rows = [r for r in _read_tsv("mtil_classnames.tsv") if r[0] == dataset]
    if not rows:
        raise ValueError(f"unknown MTIL dataset {dataset!r}; valid: {', '.join(MTIL_ORDER_I)}.")
    return tuple(name for _, _, name in sorted(rows, key=lambda r: int(r[1])))


@cache
def templates(dataset: str) -> tuple[str, ...]:
    """The reference prompt templates of an MTIL dataset (``str.format`` strings)."""
    rows = [r[1] for r in _read_tsv("mtil_templates.tsv") if r[0] == dataset]
    if not rows:
        raise ValueError(f"unknown MTIL dataset {dataset!r}; valid: {', '.join(MTIL_ORDER_I)}.")
    return tuple(rows)


def torchvision_task(
    dataset: str,
    root: Path,
    *,
    download: bool,
    prompt_templates: tuple[str, ...] | None = None,
    key_prefix: str = "mtil",
) -> Task:
    """A task over one of the 11 MTIL datasets, loaded through torchvision under ``root``."""
    source = SOURCES[TORCHVISION_NAME[dataset]]
    return Task(
        name=dataset,
        class_names=class_names(dataset),
        load_train=lambda: load(source, root, "train", download=download),
        load_test=lambda: load(source, root, "test", download=download),
        key=f"{key_prefix}:{dataset}:{root.resolve()}",
        templates=prompt_templates or templates(dataset),
        metadata={
            "source": f"torchvision:{source.dataset}",
            "expected_path": str(source.expected_path(root)),
            "data_check": data_check(source, root, download=download),
        },
    )


def mtil(
    *,
    order: Literal["I", "II"] = "I",
    download: bool = False,
    data_root: str | None = None,
) -> Stream:
    """MTIL (ZSCL) over 11 torchvision datasets, task-incremental.

    Parameters
    ----------
    order : {"I", "II"}
        Dataset order (see module docstring).
    download : bool
        Let torchvision download missing datasets (needs network).
    data_root : str or None
        Reserved: the runner's ``--data-root`` (``./data`` when ``None``).
    """
    root = resolve_root(data_root)
    names = MTIL_ORDER_I if order == "I" else MTIL_ORDER_II
    tasks = tuple(torchvision_task(d, root, download=download) for d in names)
    return Stream(f"mtil-order-{order}", tasks, "task-incremental",
                  {"order": order, DATA_HINT: download_hint(
                      [SOURCES[TORCHVISION_NAME[d]] for d in names], download)})
