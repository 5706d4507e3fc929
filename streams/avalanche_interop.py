"""Streams to and from avalanche benchmarks (avalanche-lib, imported lazily).

:func:`to_avalanche` turns a :class:`~streams.core.Stream` into an avalanche
``CLScenario`` with a ``train_stream`` and a ``test_stream`` of one experience
per task; targets are our *global* class ids (``class_offsets[t] + local``; one
shared space in a domain-incremental stream), task labels are the task index for
task-incremental streams and 0 otherwise, and the scenario carries
``class_names`` (indexed by global id), ``task_names``,
``task_classes``, ``task_templates``, ``task_years`` and ``cl_scenario``.
Experiences also get avalanche's ``classes_in_this_experience`` timeline.

:func:`from_avalanche` goes back: from those attributes when present (a round
trip keeps tasks, labels and class names), otherwise from each experience's
classes (``classes_in_this_experience`` or the targets present) with class names
given by the caller or the class ids as strings.

avalanche is imported only here: importing it pulls heavy dependencies and
patches ``torch.utils.data.Dataset.__add__``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from streams.core import DEFAULT_TEMPLATES, Scenario, Stream, Task
from streams.datasets import dataset_labels


class Shifted(Dataset):
    """A task dataset with global labels (``offset + local``) and a ``targets`` list."""

    def __init__(self, dataset: Dataset, offset: int) -> None:
        self.dataset = dataset
        labels = dataset_labels(dataset, load=True)
        self.targets = [int(v) + offset for v in labels]
        self.offset = offset

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.dataset[index][0], self.targets[index]


class _Localized(Dataset):
    """An avalanche experience dataset as ``(x, local label)`` pairs."""

    def __init__(self, dataset: Any, mapping: Mapping[int, int], where: str) -> None:
        self.dataset, self.mapping, self.where = dataset, dict(mapping), where
        targets = np.asarray(list(dataset.targets), dtype=np.int64)
        unknown = sorted({int(v) for v in targets} - set(self.mapping))
        if unknown:
            raise ValueError(f"{where}: targets {unknown[:5]} are not among the experience's "
                             f"classes {sorted(self.mapping)[:10]}.")
        self.labels = np.asarray([self.mapping[int(v)] for v in targets], dtype=np.int64)

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.dataset[index][0], int(self.labels[index])


def to_avalanche(stream: Stream, *, transform: Callable[[Any], Any] | None = None) -> Any:
    """An avalanche ``CLScenario`` with one train and one test experience per task.

    Parameters
    ----------
    stream : Stream
        Every task's train and test datasets are built (images stay lazy if the
        datasets are lazy).
    transform : callable, optional
        Applied by avalanche to each input (e.g. a backbone's ``preprocess``).

    Returns
    -------
    avalanche.benchmarks.scenarios.generic_scenario.CLScenario
    """
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
    from avalanche.benchmarks.utils import _make_taskaware_classification_dataset

    offsets = stream.class_offsets
    train, test = [], []
    for t, task in enumerate(stream):
        label = t if stream.scenario == "task-incremental" else 0
        for split, out in (("train", train), ("test", test)):
            shifted = Shifted(task.load(split), offsets[t])
            out.append(_make_taskaware_classification_dataset(
                shifted, targets=shifted.targets, task_labels=label, transform=transform))
    bench = with_classes_timeline(benchmark_from_datasets(train=train, test=test))
    bench.stream_name = stream.name
    bench.cl_scenario = stream.scenario
    bench.class_names = list(stream.task_label_space(range(len(stream))).class_names)
    bench.task_names = list(stream.task_names)
    bench.task_classes = [list(range(offsets[t], offsets[t] + task.n_classes))
                          for t, task in enumerate(stream)]
    bench.task_templates = [list(task.templates) for task in stream]
    bench.task_years = [task.year for task in stream]
    return bench


def _experience_classes(train_exp: Any, test_exp: Any) -> list[int]:
    classes = getattr(train_exp, "classes_in_this_experience", None)
    found = {int(c) for c in classes} if classes is not None else set()
    for exp in (train_exp, test_exp):
        found |= {int(v) for v in exp.dataset.targets}
    return sorted(found)


def from_avalanche(
    benchmark: Any,
    *,
    name: str | None = None,
    scenario: Scenario | None = None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
) -> Stream:
    """A :class:`Stream` over an avalanche benchmark's train/test experiences.

    Parameters
    ----------
    benchmark : avalanche scenario
        Anything with ``train_stream`` and ``test_stream`` of equal length whose
        experiences' datasets have ``targets``.
    name : str, optional
        Default: the benchmark's ``stream_name`` or ``"avalanche"``.
    scenario : str, optional
        Default: the benchmark's ``cl_scenario``; without one, ``"domain-incremental"``
        when every experience holds the same classes (avalanche's NI benchmarks), else
        ``"class-incremental"``.
    class_names : sequence or mapping, optional
        Name of each avalanche class id (default: the benchmark's ``class_names``,
        else the ids as strings). A class id without a name raises ``ValueError``.
    templates : sequence of str
        Templates for tasks without their own.
    """
    train_stream, test_stream = list(benchmark.train_stream), list(benchmark.test_stream)
    if len(train_stream) != len(test_stream):
        raise ValueError(f"benchmark has {len(train_stream)} train but {len(test_stream)} test "
                         "experiences; from_avalanche needs one test experience per train one.")
    names = class_names if class_names is not None else getattr(benchmark, "class_names", None)
    task_classes = getattr(benchmark, "task_classes", None)
    task_names = getattr(benchmark, "task_names", None)
    task_templates = getattr(benchmark, "task_templates", None)
    task_years = getattr(benchmark, "task_years", None)
    stream_name = name or getattr(benchmark, "stream_name", "avalanche")
    tasks = []
    for t, (tr, te) in enumerate(zip(train_stream, test_stream, strict=True)):
        classes = list(task_classes[t]) if task_classes is not None else _experience_classes(tr, te)
        if names is None:
            labels = [str(c) for c in classes]
        else:
            missing = [c for c in classes if (c not in names if isinstance(names, Mapping)
                                              else not 0 <= c < len(names))]
            if missing:
                raise ValueError(f"class ids {missing[:5]} of experience {t} have no class name; "
                                 f"{len(names)} names were given.")
            labels = [names[c] for c in classes]
        mapping = {c: i for i, c in enumerate(classes)}
        where = f"avalanche experience {t}"
        train_ds = _Localized(tr.dataset, mapping, f"{where} (train)")
        test_ds = _Localized(te.dataset, mapping, f"{where} (test)")
        tasks.append(Task(
            name=task_names[t] if task_names is not None else f"{stream_name}-{t}",
            class_names=tuple(labels),
            load_train=lambda d=train_ds: d, load_test=lambda d=test_ds: d,
            key=f"avalanche:{stream_name}/{t}:{id(train_ds)}",
            year=task_years[t] if task_years is not None else None,
            templates=tuple(task_templates[t]) if task_templates is not None else tuple(templates),
            metadata={"source": "avalanche", "avalanche_classes": classes},
        ))
    kind = scenario or getattr(benchmark, "cl_scenario", None)
    if kind is None:  # avalanche NI benchmarks (CORe50 NI...): every experience has every class
        same = len(tasks) > 1 and all(t.class_names == tasks[0].class_names for t in tasks)
        kind = "domain-incremental" if same else "class-incremental"
    return Stream(stream_name, tuple(tasks), kind)


__all__ = ["Shifted", "from_avalanche", "to_avalanche"]
