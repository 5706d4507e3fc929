"""NEVIS'22 average error, error-vs-compute curve and per-task compute against dm_nevis's own code.

References executed (deepmind/dm_nevis), imported unmodified:

* ``experiments_jax/metrics/nevis_metrics.py``: the metrics aggregator ``nevis_metrics`` (``init``,
  ``aggregate_train_event``, ``aggregate_predict_event``, ``_compute_results``) with the
  ``dm_nevis.benchmarker`` modules it imports (``classification_metrics``,
  ``metrics_aggregators``, ``learner_interface``, ``streams``, ``tasks``, ``datasets``);
* ``experiments_jax/training/hyperparameter_searcher.py``: ``HyperparameterTuner.minimize`` with
  the file's own local workers (``build_local_executor_workers`` on a one-thread
  ``concurrent.futures.ThreadPoolExecutor``, ``_worker``), as the finetuning learners call it
  once per training event; its ``SearchResult.resources_used`` is what the learner's ``train``
  returns, and so what the environment passes to ``aggregate_train_event``.

Stand-ins, for those of these JAX/TensorFlow-side packages that are not installed (the group's
first row names them; only ``sys.modules`` entries, removed again after the group ran):
``absl.logging`` (silent); ``tensorflow`` (``Tensor`` and ``data.Dataset`` are ``typing.Any``,
annotations only; ``io.gfile`` ``exists``/``makedirs``/``GFile`` are
``os.path.exists``/``os.makedirs``/``open``, for the raw predictions the aggregator writes into a
temporary ``DEFAULT_OUTPUT_DIR``); ``chex`` (``assert_rank``, ``assert_shape``, ``dataclass`` =
``dataclasses.dataclass``, ``ArrayTree``); ``jax.nn.one_hot`` and ``optax.softmax_cross_entropy``
in NumPy (used only for the cross-entropy the aggregator also reports, not compared). No
reference line is changed.

Ours: a real run, ``Runner`` on ``split-digits`` (5 tasks, ``pixels``) with ``finetune`` (2 epochs)
and ``Protocol(hp_trials=4)`` (the NEVIS protocol option: 4 trials per task, the dev split carved
70/15/15). From its ``results.json``: the accuracy matrix ``A``, ``compute[t]["train_flops"]`` and
each task's trials (``records[t]["hp_search"]``: dev accuracy and ``train_flops`` of every
trial). Fed to the reference on identical numbers:

* every trial of task t is one job of ``minimize``: its cost function returns the trial's dev
  error ``1 − dev accuracy`` and ``ResourceUsage(floating_point_operations=trial FLOPs)``
  (the FLOPs themselves are ours, counted by ``torch.utils.flop_counter``; the reference counts
  its own model's). Compared: ``compute[t]["train_flops"]`` vs ``resources_used`` of the search,
  and the dev accuracy of the trial kept (and which trial, where the best dev accuracy is not
  tied: among tied trials the reference keeps the first to complete, ``futures.as_completed``
  order, ours the earliest).
* the test logits of task j right after training task j (captured from the run's own
  evaluation, with the label-space positions of the targets) are the prediction event of task j,
  after the training event carrying the search's ``resources_used``. Compared:
  ``nevis_average_error(A)`` vs ``1 − test_average_single_label_accuracy`` of
  ``_compute_results``; ``nevis_error_curve(A, compute)`` vs, after each prediction event, the
  payload's ``cumulative_train_flops_used`` and ``1 − test_average_single_label_accuracy`` of the
  results computed on the state so far; ``A[j, j]`` vs the event's ``top_one_accuracy``.
"""

from __future__ import annotations

import contextlib

import common

NAME = "nevis"
DESCRIPTION = "NEVIS'22 average error, error-vs-compute curve, per-task compute vs dm_nevis"
REFERENCES = (common.Git("deepmind/dm_nevis", "37ccf1e2dd894a13a8a4f6ceb150d2e7599301d0"),)


def _stand_ins() -> dict:
    import dataclasses
    import os
    import types
    from typing import Any

    import numpy as np

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    def assert_rank(x, rank):
        if np.ndim(x) != rank:
            raise AssertionError(f"rank {np.ndim(x)} != {rank}")

    def assert_shape(x, shape):
        if tuple(np.shape(x)) != tuple(shape):
            raise AssertionError(f"shape {np.shape(x)} != {shape}")

    def cross_entropy(logits, one_hot):
        z = logits - logits.max(-1, keepdims=True)
        return -(one_hot * (z - np.log(np.exp(z).sum(-1, keepdims=True)))).sum(-1)

    quiet = module("absl.logging", **{k: (lambda *a, **kw: None)
                                      for k in ("info", "warning", "error", "debug")})
    gfile = module("tensorflow.io.gfile", exists=os.path.exists, makedirs=os.makedirs,
                   GFile=open)
    tf_io = module("tensorflow.io", gfile=gfile)
    nn = module("jax.nn", one_hot=lambda t, n: np.eye(n)[t])
    return {
        "absl": module("absl", logging=quiet), "absl.logging": quiet,
        "tensorflow": module("tensorflow", Tensor=Any, io=tf_io,
                             data=types.SimpleNamespace(Dataset=Any)),
        "tensorflow.io": tf_io, "tensorflow.io.gfile": gfile,
        "chex": module("chex", assert_rank=assert_rank, assert_shape=assert_shape,
                       dataclass=dataclasses.dataclass, ArrayTree=Any),
        "jax": module("jax", nn=nn), "jax.nn": nn,
        "optax": module("optax", softmax_cross_entropy=cross_entropy),
    }


@contextlib.contextmanager
def _reference_modules(src):
    """The reference's modules importable: the repository root on ``sys.path`` and a stand-in for
    each of ``absl``, ``tensorflow``, ``chex``, ``jax``, ``optax`` that is not installed (an
    installed one is used as it is). On exit the stand-ins and the reference's ``dm_nevis``
    modules leave ``sys.modules`` and the root leaves ``sys.path``."""
    import importlib.util
    import sys

    missing = {n: m for n, m in _stand_ins().items()
               if importlib.util.find_spec(n.split(".")[0]) is None}
    sys.modules.update(missing)
    sys.path.insert(0, str(src))
    try:
        yield sorted({n.split(".")[0] for n in missing})
    finally:
        sys.path.remove(str(src))
        for name in list(sys.modules):
            if name in missing or name.split(".")[0] == "dm_nevis":
                del sys.modules[name]


def _our_run(tmp):
    import torch

    import strategies
    import streams
    from cl.core.runner import Runner
    from cl.core.selection import Protocol
    from cl.models.backbones import create_backbone

    diagonal = {}  # j -> (test logits, label-space targets, accuracy) right after training j

    class Recording(Runner):
        def _accuracy(self, batches, label_space, ctx, j, split):
            batches = list(batches)
            acc = super()._accuracy(batches, label_space, ctx, j, split)
            if split == "test" and ctx.trained_tasks == j + 1:
                lookup = torch.full((self.n_classes,), -1, dtype=torch.long)
                lookup[list(label_space.class_ids)] = torch.arange(len(label_space))
                logits = torch.cat([self.strategy.predict(x, label_space, ctx) for x, _ in batches])
                diagonal[j] = (logits.double().numpy(),
                                       torch.cat([lookup[y] for _, y in batches]).numpy(), acc)
            return acc

    runner = Recording(streams.get("split-digits", n_tasks=5), strategies.get("finetune", epochs=2),
                       create_backbone("pixels"), out_dir=tmp / "run", cache_dir=str(tmp / "cache"),
                       progress=False, protocol=Protocol(hp_trials=4))
    return runner.run().results, diagonal


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0])
    import tempfile
    from concurrent import futures
    from pathlib import Path
    from types import SimpleNamespace

    import numpy as np

    from cl.core.metrics import nevis_average_error, nevis_error_curve
    from cl.core.results import matrix_from_json

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        results, diagonal = _our_run(tmp)
        A = matrix_from_json(results["accuracy_matrix"])
        compute = [c["train_flops"] for c in results["compute"]]
        searches = [r["hp_search"] for r in results["records"]]
        T = len(compute)

        with _reference_modules(src) as stood_in:
            from dm_nevis.benchmarker.datasets import datasets, streams, tasks
            from dm_nevis.benchmarker.learners import learner_interface

            metrics = common.import_file(src / "experiments_jax" / "metrics" / "nevis_metrics.py",
                                         "fidelity_ref_dm_nevis_nevis_metrics")
            searcher = common.import_file(
                src / "experiments_jax" / "training" / "hyperparameter_searcher.py",
                "fidelity_ref_dm_nevis_hyperparameter_searcher")
            metrics.DEFAULT_OUTPUT_DIR = str(tmp / "nevis_output")
            payloads = []
            writer = SimpleNamespace(write=payloads.append, flush=lambda: None)

            def lookup(key):
                name = key.rsplit("_", 1)[0]
                return SimpleNamespace(task_key=tasks.TaskKey(
                    name, tasks.TaskKind.CLASSIFICATION, tasks.ClassificationMetadata(10)))

            agg = metrics.nevis_metrics(lookup, writer)
            state = agg.init()
            flops_diff = kept_diff = 0.0
            kept_dis = ties = 0
            running = []
            for t in range(T):
                trials = searches[t]["trials"]

                def cost_function_builder(trials=trials):
                    def cost_function(context, overrides, *, write_checkpoint,
                                      checkpoint_to_resume):
                        trial = trials[overrides["trial"]]
                        usage = learner_interface.ResourceUsage(
                            floating_point_operations=trial["train_flops"])
                        dev = trial["dev_accuracy"]  # None: the trial diverged
                        cost = float("nan") if dev is None else 1.0 - dev
                        return cost, overrides["trial"], usage
                    return cost_function

                workers = searcher.build_local_executor_workers(
                    cost_function_builder, executor=futures.ThreadPoolExecutor, num_workers=1)
                result = searcher.HyperparameterTuner(workers).minimize(
                    context=None, search_space=[{"trial": k} for k in range(len(trials))])
                workers.queue.close()
                flops_diff = max(flops_diff, abs(compute[t]
                                                 - result.resources_used.floating_point_operations))
                ours_kept = trials[searches[t]["chosen"]]["dev_accuracy"]
                kept_diff = max(kept_diff, abs(ours_kept - (1.0 - result.cost)))
                devs = [tr["dev_accuracy"] for tr in trials]
                tied = devs.count(max(d for d in devs if d is not None)) > 1
                ties += tied
                kept_dis += (not tied) and result.outputs != searches[t]["chosen"]

                state = agg.aggregate_train_event(
                    state, streams.TrainingEvent(f"task{t}_train", f"task{t}_train_and_dev",
                                                 f"task{t}_dev"), result.resources_used)
                logits, labels, _ = diagonal[t]
                batch = datasets.MiniBatch(image=None, label=labels, multi_label_one_hot=None)
                state = agg.aggregate_predict_event(
                    state, streams.PredictionEvent(f"task{t}_test"),
                    iter([learner_interface.Predictions(batch=batch, output=[logits])]))
                running.append(1.0 - agg.compute_results(state)["test_average_single_label_accuracy"])

    x, curve = nevis_error_curve(A, compute)
    ref_x = np.array([p["cumulative_train_flops_used"] for p in payloads], dtype=float)
    top1 = np.array([float(p["top_one_accuracy"]) for p in payloads])
    where = f"split-digits, {T} tasks × 4 trials, finetune"
    n_trials = sum(len(s["trials"]) for s in searches)
    return [
        common.Row("`nevis_average_error`", f"vs 1 − `test_average_single_label_accuracy` of "
                   f"`_compute_results` ({where})", abs(nevis_average_error(A) - running[-1]),
                   tol=1e-12, note="stand-ins: " + (", ".join(stood_in) or "none")),
        common.Row("accuracy matrix diagonal `A[j, j]`", "vs `top_one_accuracy` of each prediction "
                   "event (the run's own test logits)", common.max_diff(np.diag(A), top1)[0],
                   tol=1e-12),
        common.Row("`nevis_error_curve`: running error", "vs 1 − `test_average_single_label_"
                   "accuracy` after each prediction event", common.max_diff(curve, running)[0],
                   tol=1e-12),
        common.Row("`nevis_error_curve`: cumulative compute", "vs `cumulative_train_flops_used` "
                   "of each prediction event's payload", *common.max_diff(x, ref_x),
                   dtype="float64 (FLOPs)", tol=0),
        common.Row('`compute[t]["train_flops"]` (every trial)', f"vs `minimize`'s "
                   f"`resources_used` ({n_trials} trials replayed)", flops_diff,
                   dtype="float64 (FLOPs)", tol=0),
        common.Row("trial kept", "dev accuracy of the trial kept vs `minimize`'s minimum cost",
                   kept_diff, tol=0),
        common.Row("trial kept", "index disagreements on tasks whose best dev accuracy is not tied",
                   kept_dis, dtype="count", tol=0,
                   note=f"{ties} of {T} tasks tied (not counted: the reference keeps the first "
                   "of them to complete, ours the earliest)"),
    ]
