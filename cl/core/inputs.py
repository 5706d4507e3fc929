"""What a strategy receives: cached features or preprocessed images, for training and testing.

:class:`TaskInputs` serves both kinds of strategy (``inputs = "features"`` or
``"images"``): the training data of a task as a :class:`~cl.core.strategy.TaskData`
with *global* class ids, and test batches ``(inputs, global_targets)``.
Features go through :func:`cl.models.features.extract` and its on-disk cache,
so a split is encoded at most once per run and once across runs; under
torchrun each rank encodes a strided shard, rank 0 writes the cache entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from cl.core.compute import ComputeMeter
from cl.core.strategy import TaskData
from cl.models.backbones import Backbone
from cl.models.features import FeatureCache, Features, cache_key, extract
from cl.runtime import distributed
from cl.runtime.data import Preprocessed, loader
from streams.core import Stream
from streams.datasets import dataset_labels


class TaskInputs:
    """Training data and test batches of a stream's tasks for one strategy input kind.

    Parameters
    ----------
    stream : Stream
    backbone : Backbone
    kind : {"features", "images"}
        The strategy's ``inputs``.
    cache_dir : str or None
        Feature cache directory (``None``: ``$CL_CACHE_DIR`` or the user cache).
    batch_size, num_workers : int
    device : torch.device
    progress : bool
    meter : ComputeMeter
        Counts backbone forwards of feature extraction.
    """

    def __init__(self, stream: Stream, backbone: Backbone, kind: str, *, cache_dir: str | None,
                 batch_size: int, num_workers: int, device: torch.device, progress: bool,
                 meter: ComputeMeter) -> None:
        self.stream, self.backbone, self.kind = stream, backbone, kind
        self.cache_dir, self.batch_size, self.num_workers = cache_dir, batch_size, num_workers
        self.device, self.progress, self.meter = device, progress, meter
        self._test_features: dict[tuple[str, str], Features] = {}
        self._test_images: dict[int, Preprocessed] = {}

    # -- training ------------------------------------------------------------------
    def train_data(self, t: int, split: str = "train") -> TaskData:
        """Task ``t``'s ``split`` (``"train"``, or ``"dev"`` for hyper-parameter selection)
        as :class:`TaskData` (global class ids).

        Raises
        ------
        ValueError
            An empty split, or labels outside the task's class names.
        """
        task, offset = self.stream[t], self.stream.class_offsets[t]
        data = task.load(split)
        if len(data) == 0:
            raise ValueError(f"task {task.name!r} has an empty {split} split.")
        if self.meter.flops_per_image is None:
            first = Preprocessed(data, self.backbone.preprocess, where=f"task {task.name!r} [{split}]")
            self.meter.measure_flops(self.backbone, first[0][0])
        if self.kind == "features":
            feats = self.features(t, split, data)
            return TaskData(task, feats.y + offset, features=feats.X)
        labels = torch.as_tensor(dataset_labels(data, load=True), dtype=torch.long)
        dataset = Preprocessed(data, self.backbone.preprocess, offset, task.n_classes,
                               where=f"task {task.name!r} [{split}]")
        return TaskData(task, labels + offset, dataset=dataset)

    def batches(self, data: TaskData) -> Iterator[tuple[Any, torch.Tensor]]:
        """``(inputs, global_targets)`` batches of ``data`` (a dev split), this rank's shard."""
        if data.features is not None:
            r, n = distributed.rank(), distributed.world_size()
            X, y = data.features[r::n], data.targets[r::n]
            for s in range(0, len(X), self.batch_size):
                yield X[s : s + self.batch_size], y[s : s + self.batch_size]
            return
        yield from loader(distributed.shard(data.dataset), batch_size=self.batch_size,
                          num_workers=self.num_workers)

    # -- testing -------------------------------------------------------------------
    def test_batches(self, j: int) -> Iterator[tuple[Any, torch.Tensor]]:
        """``(inputs, global_targets)`` batches of task ``j``'s test split (this rank's shard)."""
        offset = self.stream.class_offsets[j]
        if self.kind == "features":
            feats = self.features(j, "test")
            r, n = distributed.rank(), distributed.world_size()
            X, y = feats.X[r::n], feats.y[r::n]
            for s in range(0, len(X), self.batch_size):
                yield X[s : s + self.batch_size], y[s : s + self.batch_size] + offset
            return
        if j not in self._test_images:
            task = self.stream[j]
            self._test_images[j] = Preprocessed(task.load_test(), self.backbone.preprocess, offset,
                                                task.n_classes, where=f"task {task.name!r} [test]")
        yield from loader(distributed.shard(self._test_images[j]), batch_size=self.batch_size,
                          num_workers=self.num_workers)

    # -- features ------------------------------------------------------------------
    def features(self, t: int, split: str, dataset: Any = None) -> Features:
        """Features of task ``t``'s ``split`` (``dataset``: the split, if already loaded).

        Test features are kept in memory per backbone fingerprint. A task whose
        test split is shared with other tasks (CORe50's held-out sessions) names it
        with ``metadata["test_key"]``, so it is encoded once. Labels are local; a
        label outside the task's classes raises ``ValueError``.
        """
        task = self.stream[t]
        key = task.metadata.get("test_key", task.key) if split == "test" else task.key
        memo = (self.backbone.fingerprint, key)
        if split == "test" and memo in self._test_features:
            return self._test_features[memo]
        dataset = task.load(split) if dataset is None else dataset
        options = {"batch_size": self.batch_size, "num_workers": self.num_workers,
                   "device": self.device, "progress": self.progress}
        with self.meter.count_backbone(self.backbone):
            if distributed.world_size() > 1:
                feats = self._extract_sharded(dataset, key, split, options)
            else:
                feats = extract(self.backbone, dataset, key=key, split=split,
                                cache_dir=self.cache_dir, name=f"task {task.name!r}", **options)
        if len(feats.y) and (int(feats.y.min()) < 0 or int(feats.y.max()) >= task.n_classes):
            raise ValueError(
                f"task {task.name!r} [{split}] has labels in [{int(feats.y.min())}, "
                f"{int(feats.y.max())}] but {task.n_classes} class names; the dataset's labels "
                "do not match the task's class names."
            )
        if split == "test":
            self._test_features[memo] = feats
        return feats

    def _extract_sharded(self, dataset: Any, key: str, split: str,
                         options: dict[str, Any]) -> Features:
        """Each rank encodes its strided shard; shards are gathered; rank 0 writes the cache."""
        cache = FeatureCache(self.cache_dir)
        ckey = cache_key(self.backbone, dataset, key=key, split=split)
        hit = cache.load(ckey)
        if distributed.all_agree(hit is not None):
            return hit
        part = extract(self.backbone, distributed.shard(dataset), key=key, split=split,
                       use_cache=False, **options)
        total = len(dataset)
        feats = Features(distributed.gather_strided(part.X, total),
                         distributed.gather_strided(part.y, total))
        if distributed.is_main():
            cache.store(ckey, feats, backbone_name=self.backbone.name)
        distributed.barrier()
        return feats


__all__ = ["TaskInputs"]
