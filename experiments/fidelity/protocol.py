"""The NEVIS'22 protocol's per-task search values against dm_nevis's own ``hype.py``.

Reference executed: deepmind/dm_nevis ``experiments_jax/training/hype.py``, imported unmodified
(it needs only the standard library). Its functions are called with the arguments
``experiments_jax/configs/finetuning_dknn.py`` ``search_space_creator`` passes them
(``zipit`` of ``sweep("…init_learning_rate", log_uniform_random_values(1e-4, 1e-1,
seed=seed + 1, n))`` and ``sweep("label_smoothing", uniform_random_values(0.0, 0.3,
seed=seed + 2, n))``), with ``seed`` the number of tasks seen before, as
``finetuning_dknn_learner.py`` seeds it. That composition is the config's, re-stated here (it is
a closure inside ``get_config``, which imports JAX).

Ours: ``cl.core.selection.sample_trials(Finetune.searchable, n, seed=task)``, the trial values
the ``finetune`` strategy's per-task search draws. Compared: tasks 0 … 105 × 1, 2, 16 and 64
trials, every value, bitwise.

Dev splits: ``dm_nevis/streams/nevis_stream.py`` ``_dataset_splits_for_tfds`` (with
``_canonicalize_name``, ``KeyAndDataset``, ``DatasetSplits`` and the two source lists),
ast-extracted unchanged, on stand-ins for tensorflow-datasets: ``tfds.builder(name).info``
gives the train split's size, ``tfds_builder.get_dataset(name, split, start, end)`` returns the
slice it was asked for. Compared with ``streams.dev.carve_indices`` (70/15/15, the reference's
fractions for train/test-only sources): the number of train, dev and dev-test items, on
CIFAR-100-shaped labels (50,000, 500 per class), MNIST's train class counts (60,000) and the
split-digits train split (1,257). The reference slices tfds' stored order contiguously; ours is
stratified per class, so its per-class rounding may move a few items (a stated deviation).
"""

from __future__ import annotations

import common

NAME = "protocol"
DESCRIPTION = "NEVIS'22 per-task hyper-parameter trial values vs dm_nevis hype.py"
REFERENCES = (common.Git("deepmind/dm_nevis", "37ccf1e2dd894a13a8a4f6ceb150d2e7599301d0"),)


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0])
    from cl.core.selection import sample_trials
    from strategies.finetune import Finetune

    hype = common.import_file(src / "experiments_jax" / "training" / "hype.py",
                              "fidelity_ref_dm_nevis_hype")
    lr_key = "optimization.learning_rate_schedule.init_learning_rate"
    worst, count = 0.0, 0
    for task in range(106):
        for n in (1, 2, 16, 64):
            ref = list(hype.zipit(
                hype.sweep(lr_key, hype.log_uniform_random_values(1e-4, 1e-1, seed=task + 1,
                                                                  n=n)),
                hype.sweep("label_smoothing", hype.uniform_random_values(0.0, 0.3,
                                                                         seed=task + 2, n=n))))
            ours = sample_trials(Finetune.searchable, n, seed=task)
            for r, o in zip(ref, ours, strict=True):
                worst = max(worst, abs(r[lr_key] - o["lr"]),
                            abs(r["label_smoothing"] - o["label_smoothing"]))
                count += 1
    return [common.Row("`cl.core.selection.sample_trials` (`finetune` searchable)",
                       f"learning rate and label smoothing of {count:,} trials (tasks 0 … 105 "
                       "× 1, 2, 16, 64 trials)", worst, tol=0.0), *_dev_splits(src)]


def _dev_splits(src) -> list[common.Row]:
    from types import SimpleNamespace
    from typing import Any, NamedTuple

    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from streams.dev import carve_indices

    sizes: dict[str, int] = {}
    ns: dict[str, Any] = {
        "NamedTuple": NamedTuple, "streams": SimpleNamespace(DatasetKey=str),
        "datasets": SimpleNamespace(Dataset=object), "TFDSSource": object,
        "tfds": SimpleNamespace(builder=lambda name: SimpleNamespace(info=SimpleNamespace(
            splits={"train": SimpleNamespace(num_examples=sizes[name])}))),
        "tfds_builder": SimpleNamespace(get_dataset=lambda name, split, start=0, end=None: (
            split, start, sizes[name] if end is None else end))}
    ref = common.load_source(
        src / "dm_nevis" / "streams" / "nevis_stream.py",
        ["KeyAndDataset", "DatasetSplits", "_TFDS_DATASETS_TRAIN_TEST_DATASETS",
         "_TFDS_DATASETS_TRAIN_VALIDATION_TEST_DATASETS", "_canonicalize_name",
         "_dataset_splits_for_tfds"], namespace=ns)
    _, digits = load_digits(return_X_y=True)
    digits_train = train_test_split(digits, test_size=0.3, random_state=0)[0]
    mnist = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    sets = {"cifar100": np.repeat(np.arange(100), 500),
            "mnist": np.repeat(np.arange(10), mnist),
            "cifar10": digits_train}  # a train/test-only source of the split-digits size
    worst, classes, each = 0, 0, []
    shown = {"cifar100": "CIFAR-100-shaped", "mnist": "MNIST-shaped", "cifar10": "split-digits"}
    for name, labels in sets.items():
        sizes[name] = len(labels)
        split = ref._dataset_splits_for_tfds(SimpleNamespace(name=name))
        ref_sizes = [end - start for _, start, end in
                     (split.train.dataset, split.dev.dataset, split.dev_test.dataset)]
        ours = [len(part) for part in carve_indices(labels, (0.7, 0.15, 0.15))]
        diff = max(abs(a - b) for a, b in zip(ours, ref_sizes))
        worst = max(worst, diff)
        each.append(f"{shown[name]} {diff}")
        classes = max(classes, len(np.unique(labels)))
    return [common.Row("`streams.dev.carve_indices` (70/15/15)",
                       "items differing in train/dev/dev-test sizes (50,000 CIFAR-100-shaped, "
                       "60,000 MNIST-shaped, 1,257 split-digits labels)", worst, dtype="count",
                       tol=classes, note=f"per source: {', '.join(each)}; per-class rounding, bounded "
                       "by the number of classes")]
