"""Core stream types: :class:`Task`, :class:`Stream` and :class:`LabelSpace`.

A stream is data. Defining one costs nothing: each task carries *loaders*
(zero-argument callables) that build its train/test datasets only when used.

Label conventions
-----------------
Every dataset a task loads yields ``(image, local_label)`` pairs, with
``local_label`` an index into ``task.class_names``. A stream numbers all its
classes globally by concatenating the tasks' class lists in stream order, so
class ``c`` of task ``t`` has global id ``stream.class_offsets[t] + c``. Two
tasks that share a class *name* still get distinct global ids: they are
scored separately (this is how MTIL/X-TAIL and NEVIS treat repeated names),
except in a domain-incremental stream, whose tasks share one label space; a
class-incremental stream, whose tasks share one growing label space, must
not repeat a name. Labels are integers: :func:`integer_label` refuses a
non-integral float (0.5 would otherwise be truncated to class 0).

Scenarios (see ``design.md``)
-----------------------------
``"task-incremental"``
    task ``j`` is scored on its own classes only (MTIL, NEVIS).
``"class-incremental"``
    after training task ``t``, every task is scored on the union of the
    classes of tasks ``0..t`` (split-CIFAR, split-digits). Before training
    (the zero-shot row) task ``j`` is scored on the classes of tasks ``0..j``.
``"task-agnostic"``
    every task is scored on the union of all classes of the stream (X-TAIL).
``"domain-incremental"``
    every task has the same class names, in the same order: new domains or
    sessions of the same classes (CORe50 NI, Lomonaco & Maltoni 2017). The
    tasks share one label space (``class_offsets`` are all 0, a class has one
    global id across tasks) and every task is scored on it.

Task kinds
----------
A ``"classification"`` task (the default) loads ``(image, local_label)`` pairs and
has at least one class name. An ``"image-text"`` task (continual vision-language
pre-training: Mod-X, CTP) loads a
:class:`~streams.imagetext.dataset.ImageTextDataset` of images with captions,
has no class names and is scored by retrieval (:mod:`cl.core.retrieval_eval`);
``metadata["trained"] = False`` marks one that is only evaluated. A stream's
tasks are all of one kind (:attr:`Stream.kind`); the scenario then says which
test sets form the retrieval gallery (:meth:`Stream.eval_tasks`).

Splits
------
A task has ``train`` and ``test`` splits and, where its protocol defines one,
a ``dev`` split (``load_dev``) for hyper-parameter selection (NEVIS'22);
:func:`streams.dev.with_dev_splits` carves one from the train split of tasks
that have none.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from torch.utils.data import Dataset


Scenario = Literal["task-incremental", "class-incremental", "task-agnostic", "domain-incremental"]
TaskKind = Literal["classification", "image-text"]
TASK_KINDS: tuple[str, ...] = ("classification", "image-text")
SCENARIOS: tuple[str, ...] = ("task-incremental", "class-incremental", "task-agnostic",
                              "domain-incremental")
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)

DatasetLoader = Callable[[], "Dataset"]


def integer_label(value: Any, where: str) -> int:
    """``value`` as an integer class label.

    Integers (Python, numpy, one-element tensors) and integral floats (``2.0``) are
    accepted; anything else raises ``ValueError`` naming ``where`` and the value.
    """
    if not isinstance(value, numbers.Number) and callable(getattr(value, "item", None)):
        try:  # a one-element tensor or array
            value = value.item()
        except (ValueError, RuntimeError):
            pass
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    raise ValueError(
        f"{where}: label {value!r} ({type(value).__name__}) is not an integer class index; "
        "labels must be integers 0..C-1 (a float such as 0.5 would be truncated to a wrong class)."
    )


def integer_labels(values: Any, where: str) -> Any:
    """A 1-D array of labels as int64 (``np.ndarray``); non-integral values raise like
    :func:`integer_label`."""
    import numpy as np

    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all():
        return arr.astype(np.int64)
    bad = next((v for v in arr.reshape(-1).tolist()
                if not (isinstance(v, (int, float)) and not isinstance(v, bool)
                        and float(v).is_integer())), arr.dtype)
    raise ValueError(
        f"{where}: label {bad!r} is not an integer class index (labels of dtype {arr.dtype}); "
        "labels must be integers 0..C-1 (a float such as 0.5 would be truncated to a wrong class)."
    )


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class Task:
    """One task of a stream.

    Parameters
    ----------
    name : str
        Unique name within its stream (e.g. ``"digits-0"``, ``"Aircraft"``).
    class_names : tuple of str, length C
        Human-readable class names; local label ``c`` names ``class_names[c]``.
    load_train, load_test : callable returning a torch ``Dataset``
        Lazy loaders. Each dataset yields ``(image, local_label)`` where image is
        a PIL image (or anything the backbone's ``preprocess`` accepts).
    key : str
        Stable identity of the task's data (stream name, options, position),
        used in feature-cache keys. Two tasks with equal keys must load equal data.
    year : int or None
        Stream year for chronological streams (NEVIS'22), else ``None``.
    templates : tuple of str
        Prompt templates as ``str.format`` strings with one ``{}`` slot.
    metadata : mapping
        Free-form, read-only facts (source, task kind, expected data path...).
    load_dev : callable returning a torch ``Dataset``, or None
        Lazy loader of the dev split (hyper-parameter selection), where the
        task's protocol defines one.
    kind : {"classification", "image-text"}
        What the loaders give (module docstring); an image-text task has no
        class names.
    """

    name: str
    class_names: tuple[str, ...]
    load_train: DatasetLoader = field(repr=False, compare=False)
    load_test: DatasetLoader = field(repr=False, compare=False)
    key: str = ""
    year: int | None = None
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
    load_dev: DatasetLoader | None = field(default=None, repr=False, compare=False)
    kind: TaskKind = "classification"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Task.name must be a non-empty string.")
        if self.kind not in TASK_KINDS:
            raise ValueError(f"Task {self.name!r}: unknown kind {self.kind!r}; valid kinds: "
                             f"{', '.join(TASK_KINDS)}.")
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        object.__setattr__(self, "templates", tuple(self.templates))
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))
        if not self.key:
            object.__setattr__(self, "key", self.name)
        if len(self.class_names) == 0 and self.kind == "classification":
            raise ValueError(
                f"Task {self.name!r} has no classes; give it at least one class name."
            )
        if len(set(self.class_names)) != len(self.class_names):
            dupes = sorted({c for c in self.class_names if self.class_names.count(c) > 1})
            raise ValueError(f"Task {self.name!r} has duplicate class names: {dupes}.")
        for t in self.templates:
            if "{}" not in t:
                raise ValueError(
                    f"Template {t!r} of task {self.name!r} has no '{{}}' slot for the class name."
                )
        if not callable(self.load_train) or not callable(self.load_test):
            raise TypeError(f"Task {self.name!r}: load_train/load_test must be callables.")
        if self.load_dev is not None and not callable(self.load_dev):
            raise TypeError(f"Task {self.name!r}: load_dev must be a callable or None.")

    @property
    def n_classes(self) -> int:
        """Number of classes C."""
        return len(self.class_names)

    @property
    def n_classes_known(self) -> bool:
        """False when the class count is known only from the data and the data is missing
        (``metadata["n_classes_known"]``; the class names are then placeholders)."""
        return bool(self.metadata.get("n_classes_known", True))

    def prompts(self, class_name: str) -> list[str]:
        """All prompts of one class name, one per template."""
        return [t.format(class_name) for t in self.templates]

    @property
    def has_dev(self) -> bool:
        """Whether the task defines a dev split."""
        return self.load_dev is not None

    def load(self, split: Literal["train", "dev", "test"]) -> Dataset:
        """Build the dataset of ``split``; raises ``ValueError`` for another split name or a
        ``dev`` split the task does not define."""
        if split == "train":
            return self.load_train()
        if split == "test":
            return self.load_test()
        if split == "dev":
            if self.load_dev is None:
                raise ValueError(
                    f"task {self.name!r} has no dev split; carve one from its train split with "
                    "streams.dev.with_dev_splits(stream).")
            return self.load_dev()
        raise ValueError(f"split must be 'train', 'dev' or 'test', got {split!r}.")


@dataclass(frozen=True)
class LabelSpace:
    """The classes a prediction is made over.

    Parameters
    ----------
    class_ids : tuple of int, length C
        Global class ids (see module docstring), in logit order.
    class_names : tuple of str, length C
    templates : tuple of tuple of str, length C
        The prompt templates of each class (its task's templates).
    """

    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    templates: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.class_ids)

    def index_of(self, global_ids: Sequence[int]) -> list[int]:
        """Logit positions of ``global_ids``; ``ValueError`` if one is not in the space."""
        pos = {g: i for i, g in enumerate(self.class_ids)}
        missing = [g for g in global_ids if g not in pos]
        if missing:
            raise ValueError(f"class ids {missing[:5]} are not in this label space.")
        return [pos[g] for g in global_ids]


@dataclass(frozen=True)
class Stream(Sequence[Task]):
    """An ordered, immutable sequence of tasks.

    Supports ``len``, indexing, slicing (a slice is a ``Stream`` again) and
    repeated iteration. Task names must be unique.
    """

    name: str
    tasks: tuple[Task, ...]
    scenario: Scenario = "class-incremental"
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))
        if self.scenario not in SCENARIOS:
            raise ValueError(
                f"Unknown scenario {self.scenario!r}; valid scenarios: {', '.join(SCENARIOS)}."
            )
        if not self.tasks:
            raise ValueError(f"Stream {self.name!r} has no tasks.")
        for t in self.tasks:
            if not isinstance(t, Task):
                raise TypeError(f"Stream {self.name!r} holds {type(t).__name__}, not Task.")
        kinds = sorted({t.kind for t in self.tasks})
        if len(kinds) > 1:
            raise ValueError(f"Stream {self.name!r} mixes task kinds {kinds}; a stream's tasks are "
                             "all classification or all image-text.")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"Stream {self.name!r} has duplicate task names: {dupes}.")
        if self.scenario == "domain-incremental":
            first = self.tasks[0]
            for t in self.tasks[1:]:
                if t.class_names != first.class_names:
                    raise ValueError(
                        f"domain-incremental stream {self.name!r}: task {t.name!r} has classes "
                        f"{list(t.class_names)[:5]}..., task {first.name!r} has "
                        f"{list(first.class_names)[:5]}...; every task must have the same class "
                        "names in the same order (or use another scenario).")
        if self.scenario == "class-incremental":
            self._check_unique_class_names()

    def _check_unique_class_names(self) -> None:
        """A class-incremental stream scores every task on one label space: names must differ."""
        first: dict[str, str] = {}
        for task in self.tasks:
            for name in task.class_names:
                if name in first:
                    raise ValueError(
                        f"Stream {self.name!r} is class-incremental, but class {name!r} appears in "
                        f"tasks {first[name]!r} and {task.name!r}. Its tasks share one label space, "
                        "where two classes of one name cannot be told apart (a VLM prompts them "
                        "identically); rename one, or use scenario='task-incremental'."
                    )
                first[name] = task.name

    # -- Sequence protocol -------------------------------------------------
    def __len__(self) -> int:
        return len(self.tasks)

    @overload
    def __getitem__(self, index: int) -> Task: ...

    @overload
    def __getitem__(self, index: slice) -> Stream: ...

    def __getitem__(self, index: int | slice) -> Task | Stream:
        if isinstance(index, slice):
            return replace(self, tasks=self.tasks[index])
        return self.tasks[index]

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    # -- Labels --------------------------------------------------------------
    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def kind(self) -> TaskKind:
        """The kind of every task: ``"classification"`` or ``"image-text"``."""
        return self.tasks[0].kind

    @cached_property
    def class_offsets(self) -> tuple[int, ...]:
        """Global id of each task's first class, shape (T,) (all 0 when domain-incremental)."""
        if self.scenario == "domain-incremental":
            return (0,) * len(self.tasks)
        offsets, total = [], 0
        for t in self.tasks:
            offsets.append(total)
            total += t.n_classes
        return tuple(offsets)

    @cached_property
    def n_classes(self) -> int:
        """Total number of global classes (a domain-incremental stream's shared classes)."""
        if self.scenario == "domain-incremental":
            return self.tasks[0].n_classes
        return sum(t.n_classes for t in self.tasks)

    def task_label_space(self, tasks: Sequence[int]) -> LabelSpace:
        """Label space made of the classes of the given task indices, in that order (a class
        shared by several of them, as in a domain-incremental stream, appears once)."""
        ids: list[int] = []
        names: list[str] = []
        templates: list[tuple[str, ...]] = []
        offsets = self.class_offsets
        seen: set[int] = set()
        for j in tasks:
            task = self.tasks[j]
            for c in range(task.n_classes):
                if offsets[j] + c not in seen:
                    seen.add(offsets[j] + c)
                    ids.append(offsets[j] + c)
                    names.append(task.class_names[c])
                    templates.append(task.templates)
        return LabelSpace(tuple(ids), tuple(names), tuple(templates))

    def eval_tasks(self, task_index: int, trained_through: int | None) -> tuple[int, ...]:
        """Indices of the tasks whose classes form task ``task_index``'s evaluation label space
        (image-text tasks: whose test sets form its retrieval gallery).

        Parameters
        ----------
        task_index : int
            The task being evaluated, ``j``.
        trained_through : int or None
            Index ``t`` of the last task trained, ``None`` before any training.
        """
        if self.scenario in ("task-incremental", "domain-incremental"):
            return (task_index,)
        if self.scenario == "task-agnostic":
            return tuple(range(len(self)))
        last = task_index if trained_through is None else max(trained_through, task_index)
        return tuple(range(last + 1))

    def eval_label_space(self, task_index: int, trained_through: int | None) -> LabelSpace:
        """Label space on which task ``task_index`` is scored (see :meth:`eval_tasks`)."""
        return self.task_label_space(self.eval_tasks(task_index, trained_through))

    def train_label_space(self, task_index: int) -> LabelSpace:
        """Label space a strategy predicts over while learning task ``task_index``."""
        if self.scenario in ("task-incremental", "domain-incremental"):
            return self.task_label_space([task_index])
        if self.scenario == "task-agnostic":
            return self.task_label_space(range(len(self)))
        return self.task_label_space(range(task_index + 1))

    # -- Constructors ----------------------------------------------------------
    @classmethod
    def chronological(
        cls, name: str, tasks: Sequence[Task], scenario: Scenario = "task-incremental"
    ) -> Stream:
        """Stream of ``tasks`` sorted by year (stable; tasks without a year raise)."""
        undated = [t.name for t in tasks if t.year is None]
        if undated:
            raise ValueError(f"Chronological stream needs a year on every task; missing: {undated}.")
        return cls(name, tuple(sorted(tasks, key=lambda t: t.year)), scenario)


__all__ = ["DEFAULT_TEMPLATES", "SCENARIOS", "TASK_KINDS", "DatasetLoader", "LabelSpace", "Scenario",
           "Stream", "Task", "TaskKind", "integer_label", "integer_labels"]
