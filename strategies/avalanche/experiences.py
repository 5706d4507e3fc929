"""Our tasks as avalanche experiences and streams, built with avalanche's public API.

Feature experiences hold the runner's cached features (N, D) and *global*
targets, with task label 0 (avalanche's ``TaskLabels`` attribute) and its
classes timeline. Image experiences come from an avalanche ``NCScenario``
(``avalanche.benchmarks.nc_benchmark``, one dataset per task, class order
unchanged), so strategies written against it (iCaRL reads
``experience.benchmark.n_classes_per_exp`` and ``classes_order``) see the
stream's real class structure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset


class TensorPairs(Dataset):
    """``(features[i], int(targets[i]))`` with a ``targets`` list, as avalanche reads labels."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        self.features = features.float().cpu()
        self.labels = targets.long().cpu()
        self.targets: list[int] = self.labels.tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.features[index], self.targets[index]


def classification_dataset(features: torch.Tensor, targets: torch.Tensor) -> Any:
    """An avalanche task-aware classification dataset of features (N, D) and targets (N,), task label 0."""
    from avalanche.benchmarks.utils.classification_dataset import (
        TaskAwareSupervisedClassificationDataset,
    )
    from avalanche.benchmarks.utils.data_attribute import DataAttribute, TaskLabels

    pairs = TensorPairs(features, targets)
    return TaskAwareSupervisedClassificationDataset([pairs], data_attributes=[
        DataAttribute(pairs.targets, "targets"), TaskLabels([0] * len(pairs))])


def make_experience(
    features: torch.Tensor, targets: torch.Tensor, index: int, previous: list[set[int]],
    stream_name: str = "train",
) -> Any:
    """One avalanche experience of ``features`` (N, D) and global ``targets`` (N,).

    ``current_experience`` is ``index``; ``previous`` holds the class sets of the
    experiences before it, from which the classes timeline
    (``classes_in_this_experience``, ``previous_classes``, ``classes_seen_so_far``) is set.
    """
    from avalanche.benchmarks.scenarios import with_task_labels
    from avalanche.benchmarks.scenarios.dataset_scenario import DatasetExperience
    from avalanche.benchmarks.scenarios.generic_scenario import EagerCLStream

    exp = DatasetExperience(dataset=classification_dataset(features, targets),
                            current_experience=index)
    exp.origin_stream = EagerCLStream(stream_name, [], set_stream_info=False)
    current = {int(c) for c in targets.unique()}
    seen_before = set().union(*previous) if previous else set()
    exp.classes_in_this_experience = current
    exp.previous_classes = seen_before
    exp.classes_seen_so_far = current | seen_before
    exp.future_classes = set()
    return with_task_labels(exp)


def make_stream(features: list[torch.Tensor], targets: list[torch.Tensor], name: str = "test") -> Any:
    """An avalanche stream (experience ``j`` = task ``j``) of per-task features and targets."""
    from avalanche.benchmarks.scenarios import with_task_labels
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    sets = [classification_dataset(x, y) for x, y in zip(features, targets, strict=True)]
    return with_task_labels(benchmark_from_datasets(**{name: sets})).streams[name]


def image_scenario(stream: Any, transform: Callable[[Any], Any]) -> Any:
    """The stream's images as an avalanche ``NCScenario`` (one experience per task, global ids).

    Parameters
    ----------
    stream : streams.core.Stream
    transform : callable
        Applied by avalanche to each image (the backbone's ``preprocess``).
    """
    from avalanche.benchmarks import nc_benchmark

    from streams.avalanche_interop import Shifted

    splits = {split: [Shifted(task.load(split), stream.class_offsets[t])
                      for t, task in enumerate(stream)] for split in ("train", "test")}
    return nc_benchmark(splits["train"], splits["test"], n_experiences=len(stream),
                        task_labels=False, one_dataset_per_exp=True, shuffle=False,
                        train_transform=transform, eval_transform=transform)
