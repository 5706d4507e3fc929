"""CORe50 in the NI setting: new instances of the same 50 objects, session after session.

Lomonaco & Maltoni, "CORe50: a New Dataset and Benchmark for Continuous Object
Recognition", CoRL 2017, §4 (NI: "New Instances"). 50 domestic objects of 10
categories (5 each) were filmed in 11 sessions (different backgrounds and
lighting). In NI every training batch is one session and holds all 50 objects;
the training sessions are 1, 2, 4, 5, 6, 8, 9, 11 and sessions 3, 7 and 10 are
held out as the one test set. So the stream is *domain-incremental*: 8 tasks
over one shared label space, each scored on the same test set (the three test
sessions), as in the reference protocol and in the NMC-baseline paper (Janson
et al. 2022, "A Simple Baseline that Questions the Use of Pretrained-Models in
Continual Learning").

Data
----
The official archive ``core50_128x128.zip`` extracted under
``DATA_ROOT/core50/``: ``DATA_ROOT/core50/core50_128x128/s<session>/o<object>/*.png``
(``core50_32x32`` with ``mini=True``). Objects ``o1``–``o50`` are, five at a
time, plug adapters, mobile phones, scissors, light bulbs, cans, glasses,
balls, markers, cups and remote controls (``CATEGORIES``; avalanche's
``core50_data.name2cat`` uses the same order). ``cl streams check core50``
lists which sessions are present.

Session order: natural (1, 2, 4, 5, 6, 8, 9, 11) by default; the official NI
runs shuffle it, which ``sessions=[...]`` reproduces.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from torch.utils.data import Dataset

from streams.availability import DATA_HINT
from streams.benchmarks.torchvision_data import resolve_root
from streams.core import Stream, Task
from streams.folders import IMAGE_EXTENSIONS, ImageFileDataset

#: the 10 categories, in object order (o1-o5 are plug adapters, ...)
CATEGORIES: tuple[str, ...] = ("plug adapter", "mobile phone", "scissors", "light bulb", "can",
                               "glasses", "ball", "marker", "cup", "remote control")
TRAIN_SESSIONS: tuple[int, ...] = (1, 2, 4, 5, 6, 8, 9, 11)
TEST_SESSIONS: tuple[int, ...] = (3, 7, 10)
#: The dataset's page (Lomonaco & Maltoni), which links core50_128x128.zip and core50_32x32.zip.
SOURCE_URL = "https://vlomonaco.github.io/core50/"
TEMPLATES: tuple[str, ...] = ("a photo of a {}.", "a photo of the {}, a domestic object.")


def class_names(labels: Literal["objects", "categories"]) -> tuple[str, ...]:
    """50 object names (``"plug adapter 1"`` ... ``"remote control 5"``) or the 10 categories."""
    if labels == "categories":
        return CATEGORIES
    return tuple(f"{c} {i}" for c in CATEGORIES for i in range(1, 6))


def _session_dataset(folders: Sequence[Path], labels: str) -> ImageFileDataset:
    """Images of session folders ``s<k>/o<i>/*``, labelled by object or category (labels are
    known without opening an image)."""
    paths, targets = [], []
    for folder in folders:
        found = len(paths)
        for obj in range(1, 51):
            files = sorted(p for p in (folder / f"o{obj}").glob("*")
                           if p.suffix.lower() in IMAGE_EXTENSIONS)
            paths.extend(files)
            targets.extend([obj - 1 if labels == "objects" else (obj - 1) // 5] * len(files))
        if len(paths) == found:
            raise FileNotFoundError(f"CORe50 session folder {str(folder)!r} holds no o<k>/ images.")
    return ImageFileDataset(paths, targets)


def core50(
    *,
    labels: Literal["objects", "categories"] = "objects",
    sessions: Sequence[int] = TRAIN_SESSIONS,
    test_sessions: Sequence[int] = TEST_SESSIONS,
    mini: bool = False,
    data_root: str | None = None,
) -> Stream:
    """CORe50 NI: one domain-incremental task per training session.

    Parameters
    ----------
    labels : {"objects", "categories"}
        50-way object classification (the NI protocol) or 10-way category.
    sessions : sequence of int
        Training sessions in stream order (default the NI training sessions, in order).
    test_sessions : sequence of int
        Held-out sessions forming every task's test split (default 3, 7, 10).
    mini : bool
        Use the 32×32 images (``core50_32x32``) instead of 128×128.
    data_root : str or None
        Reserved: the runner's ``--data-root`` (``./data`` when ``None``).
    """
    if labels not in ("objects", "categories"):
        raise ValueError(f"labels must be 'objects' or 'categories', got {labels!r}.")
    sessions, test_sessions = tuple(sessions), tuple(test_sessions)
    every = sessions + test_sessions
    if not sessions or not test_sessions or len(set(every)) != len(every) \
            or not all(isinstance(s, int) and 1 <= s <= 11 for s in every):
        raise ValueError(
            f"sessions {list(sessions)} and test_sessions {list(test_sessions)} must be distinct "
            "CORe50 sessions 1..11, at least one of each.")
    root = resolve_root(data_root) / "core50" / ("core50_32x32" if mini else "core50_128x128")
    names = class_names(labels)
    test_dirs = [root / f"s{s}" for s in test_sessions]

    def load_test() -> Dataset:
        return _session_dataset(test_dirs, labels)

    tasks = []
    for s in sessions:
        folder = root / f"s{s}"

        def data_check(folder: Path = folder) -> tuple[bool, str | None, str]:
            if not folder.is_dir():
                return False, None, f"missing {folder}"
            held_out = [d.name for d in test_dirs if not d.is_dir()]
            if held_out:  # every task is scored on them
                return False, None, (f"missing the held-out test sessions {', '.join(held_out)} "
                                     "(every task is scored on them)")
            return True, str(folder), f"session folder (test: sessions {list(test_sessions)})"

        tasks.append(Task(
            name=f"session {s}", class_names=names,
            load_train=lambda folder=folder: _session_dataset([folder], labels),
            load_test=load_test,
            key=f"core50:{root.resolve()}:{labels}:s{s}|test={list(test_sessions)}",
            templates=TEMPLATES,
            metadata={"session": s, "expected_path": str(folder), "data_check": data_check,
                      "test_sessions": list(test_sessions),
                      "test_key": f"core50:{root.resolve()}:{labels}:test={list(test_sessions)}"},
        ))
    hint = (f"Download {root.name}.zip from {SOURCE_URL} and extract it under "
            f"{root.parent}/ (this stream has no stream.download). Every task is scored on the "
            f"held-out sessions {', '.join(f's{t}' for t in test_sessions)} (stream.test_sessions), "
            "so they are needed whichever sessions train.")
    return Stream("core50", tuple(tasks), "domain-incremental",
                  {"labels": labels, "test_sessions": list(test_sessions), "root": str(root),
                   DATA_HINT: hint})
