"""Stream definitions: ordered, immutable sequences of tasks.

Use :func:`get` to build a registered stream by name and :func:`available` to
list them. Protocol streams live in :mod:`streams.benchmarks` and are
imported only when built; the core types (:mod:`streams.core`) and the
builders of user streams (:func:`from_folders`, :func:`from_datasets`) are
re-exported here on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cl.config.registry import Registry

if TYPE_CHECKING:
    from streams.availability import TaskAvailability, check_data, drop_missing, require_data
    from streams.benchmarks.synthetic import synthetic_nevis_like
    from streams.core import DEFAULT_TEMPLATES, SCENARIOS, LabelSpace, Scenario, Stream, Task
    from streams.datasets import from_datasets
    from streams.dev import with_dev_splits
    from streams.folders import from_folders

_DATA = ("data_root",)
STREAMS: Registry[Stream] = Registry("stream")
for _name, _target, _reserved, _text in (
    ("split-digits", "digits:split_digits", (),
     "scikit-learn 8x8 digits, 5 class-incremental tasks (offline)"),
    ("nevis", "nevis:nevis", _DATA,
     "NEVIS'22 FULL: 106 tasks (92 before 2020, the default), task-incremental"),
    ("nevis-short", "nevis:nevis_short", _DATA,
     "NEVIS'22 SHORT: 29 tasks (25 before 2020), task-incremental"),
    ("nevis-tiny", "nevis:nevis_tiny", _DATA,
     "NEVIS'22 TINY: 7 tasks (6 before 2020), task-incremental"),
    ("synthetic-nevis", "synthetic:synthetic_nevis", (),
     "synthetic NEVIS-like: 100 tasks of 2..1000 classes, task-incremental (offline)"),
    ("mtil", "mtil:mtil", _DATA,
     "MTIL (ZSCL) order I or II: 11 tasks, task-incremental (torchvision)"),
    ("x-tail", "xtail:xtail", _DATA,
     "X-TAIL (RAIL): 10 tasks, 16-shot, task-agnostic (torchvision)"),
    ("split-cifar100", "splits:split_cifar100", _DATA,
     "CIFAR-100: 10 tasks (n_tasks), class-incremental, seed-1993 order"),
    ("split-imagenet-r", "splits:split_imagenet_r", _DATA,
     "ImageNet-R (DATA_ROOT/imagenet-r): 10 tasks, class-incremental"),
    ("split-folder", "splits:split_folder", _DATA,
     "image folder stream.root=DIR: 5 tasks (n_tasks), class-incremental"),
    ("core50", "core50:core50", _DATA,
     "CORe50 NI (DATA_ROOT/core50): 8 sessions of 50 objects, domain-incremental"),
    ("domain-digits", "domains:domain_digits", (),
     "scikit-learn digits under 5 image domains, one session each, domain-incremental (offline)"),
    ("toy-mtil", "toy:toy_mtil", (),
     "toy world: 8 domains (5 known to toy-clip, 3 new), task-incremental (offline)"),
    ("toy-xtail", "toy:toy_xtail", (),
     "toy world: 4 object domains, 16-shot, task-agnostic (offline)"),
    ("toy-cil", "toy:toy_cil", (),
     "toy world: digits 0-9 (or shapes, colours) in 5 class-incremental tasks (offline)"),
    ("toy-captions", "toy_captions:toy_captions_stream", (),
     "toy world image-caption pairs: 2 held-in then 2 held-out domains, task-incremental (offline)"),
    ("coco-flickr", "imagetext_streams:coco_flickr_stream", _DATA,
     "Mod-X image-text: COCO, then Flickr30K in 5 phases (DATA_ROOT/coco, DATA_ROOT/flickr30k)"),
    ("p9d", "imagetext_streams:p9d_stream", _DATA,
     "CTP image-text: P9D, 9 industries, union gallery (DATA_ROOT/p9d)"),
):
    STREAMS.register(_name, f"streams.benchmarks.{_target}", reserved=_reserved,
                     description=_text)

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("DEFAULT_TEMPLATES", "SCENARIOS", "LabelSpace", "Scenario", "Stream", "Task"),
                    "streams.core"),
    **dict.fromkeys(("TaskAvailability", "check_data", "drop_missing", "require_data"),
                    "streams.availability"),
    "from_datasets": "streams.datasets",
    "from_folders": "streams.folders",
    "with_dev_splits": "streams.dev",
    "synthetic_nevis_like": "streams.benchmarks.synthetic",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'streams' has no attribute {name!r}")


def get(name: str, /, **options: Any) -> Stream:
    """Build the stream registered as ``name`` with validated ``options``."""
    return STREAMS.get(name, **options)


def available() -> list[str]:
    """Names of registered streams."""
    return STREAMS.available()


__all__ = ["DEFAULT_TEMPLATES", "SCENARIOS", "STREAMS", "LabelSpace", "Scenario", "Stream", "Task",
           "TaskAvailability", "available", "check_data", "drop_missing", "from_datasets",
           "from_folders", "get", "require_data", "synthetic_nevis_like",
           "with_dev_splits"]
