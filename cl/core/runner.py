"""The runner: the one loop over a stream.

For a stream of T tasks it evaluates every task once before training (the
zero-shot row), then for each task ``t``: plugins' and strategy's
``before_task``, ``train_task``, ``after_task``, evaluation of every task on
the scenario's label space, tracker update, and an atomic checkpoint, so a run
killed at any moment resumes after the last finished task with the same
numbers (every task reseeds from ``derive_seed(seed, t)``). A run holds an
exclusive lock on its directory (:class:`cl.runtime.lock.RunLock`) from start to
end, and resumes only from a checkpoint of the same config, code and strategy
(:func:`cl.core.checkpoint.check_resumable`).

With an active :class:`~cl.core.selection.Protocol` (NEVIS'22 per-task
hyper-parameter search) the training step of each task is the search of
:func:`~cl.core.selection.search_task`: every trial trains from the same state on
the train split and is scored on the dev split; the chosen trial's state is
kept, and every trial's compute is the task's.

An image-text stream (continual vision-language pre-training) is scored by
retrieval instead of accuracy: its training pairs and its score rows come from
:class:`~cl.core.retrieval_eval.RetrievalEvaluator`, and the tracker records
one matrix per retrieval score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from cl.config import RunConfig
from cl.core.checkpoint import CheckpointStore, check_resumable, class_tag
from cl.core.compute import ComputeMeter
from cl.core.inputs import TaskInputs
from cl.core.plugin import Plugin, call_plugin
from cl.core.results import RunInfo, build_results, load_results, write_results
from cl.core.selection import Protocol, search_task
from cl.core.strategy import Context, Strategy, TaskData, check_strategy
from cl.core.tracker import Tracker
from cl.errors import ProtocolError
from cl.models.backbones import Backbone
from cl.runtime import distributed
from cl.runtime.environment import environment
from cl.runtime.lock import RunLock
from cl.runtime.seeding import check_seed, derive_seed, seed_everything
from streams.core import LabelSpace, Stream

logger = logging.getLogger("cl")


@dataclass
class RunResult:
    """What :meth:`Runner.run` returns: the run directory, tracker and results dict."""

    out_dir: Path
    tracker: Tracker
    results: dict[str, Any]


class Runner:
    """Runs one strategy over one stream on one backbone.

    Parameters
    ----------
    stream : Stream
    strategy : Strategy
    backbone : Backbone
    out_dir : path
        Run directory: checkpoints, results and plots go there.
    seed : int
    device : torch.device or str
    batch_size, num_workers : int
        Loading and evaluation batch settings.
    cache_dir : str or None
        Feature cache directory (``None``: ``$CL_CACHE_DIR`` or the user cache).
    plugins : sequence of Plugin
    progress : bool
    config : RunConfig or None
        Written to the run directory and checked on resume.
    loggers : sequence
        Objects with ``log_row(t, tracker)`` and ``close()`` (TensorBoard, W&B).
    extra_results : dict
        Merged into ``results.json`` (e.g. skipped tasks).
    protocol : Protocol or None
        Per-task hyper-parameter search (:mod:`cl.core.selection`); when active,
        tasks without a dev split get one carved from their train split
        (:func:`streams.dev.with_dev_splits`) and ``results.json`` records it.
    """

    def __init__(
        self,
        stream: Stream,
        strategy: Strategy,
        backbone: Backbone,
        *,
        out_dir: str | Path,
        seed: int = 0,
        device: torch.device | str = "cpu",
        batch_size: int = 256,
        num_workers: int = 0,
        cache_dir: str | None = None,
        plugins: Sequence[Plugin] = (),
        progress: bool = True,
        config: RunConfig | None = None,
        loggers: Sequence[Any] = (),
        extra_results: dict[str, Any] | None = None,
        protocol: Protocol | None = None,
    ) -> None:
        check_strategy(strategy)
        if getattr(strategy, "needs_text", False) and not backbone.has_text:
            raise ValueError(
                f"strategy {type(strategy).__name__} needs a text tower, but backbone "
                f"{backbone.name!r} has none; use a VLM backbone such as 'ViT-B-16:openai' "
                "or 'cl-tiny-vit'."
            )
        effective = strategy.check_run(backbone, stream) if isinstance(strategy, Strategy) else {}
        for option, value in effective.items():
            logger.warning("strategy option %r cannot be honoured on backbone %r and stream %r; "
                           "it is %r in this run (recorded in results.json as "
                           "effective_options).", option, backbone.name, stream.name, value)
        if effective:
            extra_results = {**(extra_results or {}), "effective_options": effective}
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        check_seed(seed, "Runner seed")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}.")
        from strategies.loading import strategy_label  # the label a Python run gets too

        label = strategy_label(strategy)
        self.protocol = protocol or Protocol()
        if self.protocol.active and stream.kind == "image-text":
            raise ValueError(f"stream {stream.name!r} is image-text: the per-task hyper-parameter "
                             "search (protocol.hp_trials) scores classification accuracy and does "
                             "not apply; set protocol.hp_trials=0.")
        self._space = self.protocol.space(strategy, label) if self.protocol.active else {}
        if self.protocol.active:
            from streams.dev import with_dev_splits

            stream = with_dev_splits(stream, fractions=self.protocol.dev_fractions,
                                     seed=self.protocol.dev_seed)
            extra_results = {**(extra_results or {}), "protocol": self.protocol.to_dict()}
        self.stream, self.strategy, self.backbone = stream, strategy, backbone
        self.out_dir = Path(out_dir)
        self.seed = seed
        self.device = torch.device(device)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.plugins = list(plugins)
        self.main = distributed.is_main()
        self.progress = progress and self.main
        self.config = config
        self.loggers = list(loggers)
        self.tracker = Tracker(stream.task_names)
        self.meter = ComputeMeter(self.device)
        self.inputs = TaskInputs(stream, backbone, strategy.inputs, cache_dir=cache_dir,
                                 batch_size=batch_size, num_workers=num_workers,
                                 device=self.device, progress=self.progress, meter=self.meter)
        self.retrieval = None
        if stream.kind == "image-text":
            self.retrieval = self._retrieval(strategy, batch_size, num_workers)
            self.tracker = self.retrieval.new_tracker()
        self.checkpoints = CheckpointStore(self.out_dir)
        self._spaces: dict[tuple[int, ...], LabelSpace] = {}
        self.n_classes = stream.n_classes
        code = config.code_identity() if config else {}
        self.identity = {"config": config.identity(), "code": code} if config else None
        self.owners = {
            "strategy": {"class": class_tag(strategy),
                         "options": config.strategy_options if config else None},
            "plugins": [{"class": class_tag(p), "options": None} for p in self.plugins],
        }
        self.info = RunInfo(
            stream=stream.name, strategy=label, backbone=backbone.name,
            backbone_has_text=backbone.has_text, backbone_fingerprint=backbone.fingerprint, seed=seed,
            scenario=stream.scenario, class_names=[list(t.class_names) for t in stream],
            years=[t.year for t in stream], config=config.to_dict() if config else None,
            environment=environment(self.device),
            extra={**({"code": code} if code else {}), **(extra_results or {})},
        )

    def _retrieval(self, strategy: Strategy, batch_size: int, num_workers: int) -> Any:
        """The image-text evaluator (:mod:`cl.core.retrieval_eval`)."""
        from cl.core.retrieval_eval import RetrievalEvaluator

        return RetrievalEvaluator(self.stream, strategy, self.backbone, batch_size=batch_size,
                                  num_workers=num_workers, progress=self.progress,
                                  meter=self.meter)

    # -- what a strategy receives ----------------------------------------------------
    def context(self, t: int, *, trained: int | None = None) -> Context:
        """The context of task ``t``, reseeding python, numpy and torch for it.

        ``trained`` is the number of tasks trained so far (default ``t``); with
        ``trained=0`` at ``t=0`` the seed is that of the zero-shot evaluation.
        """
        trained = t if trained is None else trained
        gen = seed_everything(derive_seed(self.seed, t if trained else -1))
        return Context(
            task_index=t, task=self.stream[t], stream=self.stream,
            label_space=self.stream.train_label_space(t), backbone=self.backbone,
            device=self.device, seed=self.seed, generator=gen, logger=logger,
            record=lambda key, value: self.tracker.record(t, key, value),
            trained_tasks=trained, plugins=self.plugins, progress=self.progress,
            batch_size=self.batch_size, num_workers=self.num_workers, run_dir=self.out_dir,
        )

    def task_data(self, t: int) -> TaskData:
        """Task ``t``'s training data in the form the strategy takes (global class ids)."""
        if self.retrieval is not None:
            return self.retrieval.train_data(t)
        return self.inputs.train_data(t)

    # -- evaluation ------------------------------------------------------------------
    def evaluate(self, j: int, label_space: LabelSpace, ctx: Context) -> float:
        """Top-1 accuracy of the strategy on task ``j``'s test split over ``label_space``."""
        return self._accuracy(self.inputs.test_batches(j), label_space, ctx, j, "test")

    def _accuracy(self, batches: Any, label_space: LabelSpace, ctx: Context, j: int,
                  split: str) -> float:
        """Top-1 accuracy over ``(inputs, global_targets)`` batches of task ``j``'s ``split``."""
        lookup = torch.full((self.n_classes,), -1, dtype=torch.long)
        lookup[list(label_space.class_ids)] = torch.arange(len(label_space))
        correct = total = 0
        for inputs, targets in batches:
            logits = self.strategy.predict(inputs, label_space, ctx)
            self._check_logits(logits, (len(inputs), len(label_space)), j)
            positions = lookup[targets]
            correct += int((logits.argmax(1).cpu() == positions).sum())
            total += len(targets)
        correct, total = distributed.sum_counts(correct, total)
        if total == 0:
            raise ValueError(f"task {self.stream[j].name!r} has an empty {split} split.")
        return correct / total

    def _check_logits(self, logits: Any, shape: tuple[int, int], j: int) -> None:
        """Raise unless ``logits`` is a tensor of ``shape`` whose rows each have a finite maximum.

        ``-inf`` marks classes a strategy rules out; NaN, ``+inf`` or a row of only
        ``-inf`` would make the argmax meaningless.
        """
        name, task = type(self.strategy).__name__, self.stream[j].name
        if not isinstance(logits, torch.Tensor):
            what = f"{type(logits).__module__}.{type(logits).__qualname__}"
            size = getattr(logits, "shape", None)
            raise ProtocolError(
                f"{name}.predict returned a {what}" + (f" of shape {tuple(size)}" if size else "")
                + f"; it must return a torch.Tensor of shape {shape} (batch, label space)."
            )
        if tuple(logits.shape) != shape:
            raise ValueError(f"{name}.predict returned shape {tuple(logits.shape)}; expected a tensor "
                             f"of shape {shape} (batch, label space).")
        if torch.isnan(logits).any():
            raise FloatingPointError(f"{name}.predict returned NaN logits on task {task!r}.")
        if torch.isposinf(logits).any():
            raise FloatingPointError(f"{name}.predict returned +inf logits on task {task!r}; the "
                                     "argmax of a row with +inf is arbitrary.")
        if len(logits) and torch.isneginf(logits).all(dim=1).any():
            raise FloatingPointError(f"{name}.predict returned a row of only -inf logits on task "
                                     f"{task!r}; every example needs one finite score.")

    def _label_space(self, j: int, row: int | None) -> LabelSpace:
        """``stream.eval_label_space(j, row)``, built once per distinct class set."""
        key = self.stream.eval_tasks(j, row)
        if key not in self._spaces:
            self._spaces[key] = self.stream.task_label_space(key)
        return self._spaces[key]

    def _eval_row(self, row: int | None, ctx: Context) -> dict[str, float]:
        if self.retrieval is not None:
            return self.retrieval.evaluate_row(row, ctx, self.tracker)
        accuracies = {}
        bar = tqdm(range(len(self.stream)), desc="evaluate", leave=False, disable=not self.progress)
        for j in bar:
            acc = self.evaluate(j, self._label_space(j, row), ctx)
            self.tracker.record_accuracy(row, j, acc)
            accuracies[self.stream[j].name] = acc
        return accuracies

    # -- the loop --------------------------------------------------------------------
    def run(self) -> RunResult:
        """Run (or resume) the stream; write results; return them.

        The run directory is locked for the whole run (another process gets
        :class:`~cl.errors.RunDirectoryInUse`). On an error inside a task the
        results so far are written with ``status = "failed"`` and the error is
        re-raised. A run already completed is left as it is (with a warning).
        """
        with RunLock(self.out_dir) if self.main else nullcontext():
            return self._run()

    def _run(self) -> RunResult:
        start = self._resume()
        try:
            if start == len(self.stream) and (done := self._completed()) is not None:
                return done
            if start == 0 and self.tracker.completed_rows() == 0:
                ctx = self.context(0, trained=0)
                with self.meter.time(self.tracker, 0, "eval_seconds"):
                    self._eval_row(None, ctx)
            tasks = tqdm(range(start, len(self.stream)), desc=self.stream.name, initial=start,
                         total=len(self.stream), disable=not self.progress)
            for t in tasks:
                tasks.set_postfix_str(self.stream[t].name)
                self._task(t)
                self._write("running")
        except BaseException as err:
            try:
                self._write("failed", error=f"{type(err).__name__}: {err}")
            except Exception as failure:  # noqa: BLE001 - the original error must surface
                logger.error("could not write the failure record of %s (%s: %s)", self.out_dir,
                             type(failure).__name__, failure)
            raise
        finally:
            for lg in self.loggers:
                lg.close()
        results = self._write("completed")
        if self.main:
            from cl.reporting.report import write_report  # matplotlib: only once, at the end

            write_report(self.out_dir, results)
        return RunResult(self.out_dir, self.tracker, results)

    def _completed(self) -> RunResult | None:
        """The results of a run whose every task is checkpointed and whose ``results.json`` says
        completed (and verifies); ``None`` when they must be written again."""
        results = None
        if self.main:
            try:
                results = load_results(self.out_dir)
            except (OSError, ValueError) as err:
                logger.warning("rewriting the results of %s: %s", self.out_dir, err)
        results = distributed.broadcast_object(results)
        if results is None or results.get("status") != "completed":
            return None
        logger.warning("run %s is already complete (%d of %d tasks); its outputs are left as they "
                       "are. Use another --out to run it again.", self.out_dir, len(self.stream),
                       len(self.stream))
        return RunResult(self.out_dir, self.tracker, results)

    def _write(self, status: str, error: str | None = None) -> dict[str, Any]:
        """Build ``results.json`` and write it (rank 0); return the results."""
        results = build_results(self.tracker, self.info, status=status, error=error)
        if self.main:
            write_results(self.out_dir, results)
        return results

    def _fit(self, t: int, ctx: Context, data: TaskData | None = None) -> TaskData:
        """The hooks of one training step on task ``t`` (loading its data when not given)."""
        for plugin in self.plugins:
            call_plugin(plugin, "before_task", ctx)
        self.strategy.before_task(ctx)
        if data is None:
            data = self.task_data(t)
            ctx.count("train_examples", len(data.targets))
        with self.meter.training_flops(self.strategy, ctx):
            self.strategy.train_task(data, ctx)
        for plugin in self.plugins:
            call_plugin(plugin, "after_train", data, ctx)
        self.strategy.after_task(ctx)
        for plugin in self.plugins:
            call_plugin(plugin, "after_task", ctx)
        return data

    def _search(self, t: int, ctx: Context) -> TaskData:
        """Task ``t``'s hyper-parameter search; every trial's compute goes to ``ctx``."""
        data = self.task_data(t)
        ctx.count("train_examples", len(data.targets))
        dev = self.inputs.train_data(t, "dev")
        space = self.stream.eval_label_space(t, t)

        def trained(trial: Context) -> None:
            self._fit(t, trial, data)

        def score(trial: Context) -> float:
            trial.trained_tasks = t + 1
            return self._accuracy(self.inputs.batches(dev), space, trial, t, "dev")

        chosen, trials = search_task(t, self.protocol, self._space, self.strategy, self.plugins,
                                     self.backbone, new_context=lambda: self.context(t),
                                     train=trained, score=score)
        for trial in trials:
            for key, value in trial.counters.items():
                ctx.count(key, value)
        ctx.count("hp_trials", len(trials))
        for key, value in trials[chosen].records.items():
            self.tracker.record(t, key, value)
        self.tracker.record(t, "hp_search", {"chosen": chosen, "values": trials[chosen].values,
                                             "trials": [tr.summary() for tr in trials]})
        return data

    def _task(self, t: int) -> None:
        ctx = self.context(t)
        with self.meter.time(self.tracker, t, "train_seconds"), self.meter.peak(self.tracker, t):
            data = self._search(t, ctx) if self.protocol.active else self._fit(t, ctx)
        ctx.trained_tasks = t + 1
        with self.meter.time(self.tracker, t, "eval_seconds"):
            accuracies = self._eval_row(t, ctx)
        for plugin in self.plugins:
            call_plugin(plugin, "after_eval", ctx, accuracies)
        self.tracker.add_compute(t, **ctx.counters)
        self.meter.finish_task(self.tracker, t, self.strategy, self.backbone, len(data.targets))
        for lg in self.loggers:
            lg.log_row(t, self.tracker)
        self.checkpoints.save(t, self.tracker, self.strategy.state_dict(),
                              [p.state_dict() for p in self.plugins], identity=self.identity,
                              owners=self.owners)

    def _resume(self) -> int:
        """Restore the newest valid checkpoint; return the first task still to run."""
        self.checkpoints.prepare(self.config)
        state = self.checkpoints.load_latest()
        if state is None:
            return 0
        check_resumable(state, identity=self.identity, owners=self.owners)
        self.tracker = Tracker.from_dict(state["tracker"])
        self.strategy.load_state_dict(state["strategy"])
        for plugin, pstate in zip(self.plugins, state["plugins"], strict=False):
            plugin.load_state_dict(pstate)
        start = int(state["task"]) + 1
        logger.info("resuming %s after task %d of %d", self.out_dir, start, len(self.stream))
        return start
