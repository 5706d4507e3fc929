"""Shared runner glue for the training-free strategies ``nmc`` and ``gda``.

The strategy wraps an incremental estimator (:class:`strategies.NMC` or
:class:`strategies.GDA`) fitted with ``partial_fit`` on each task's cached
features and *global* class ids. On a backbone with a text tower it can
ensemble with CLIP's zero-shot head ``T`` (Wang et al., ICLR 2024; the
form of their reference code, ``main_few_shots.py``)::

    logits = 100 · x · Tᵀ + α · scores(x)

with ``α`` chosen per task from ``alpha_grid`` by accuracy on a held-out
slice of the task's *training* features (the reference code tunes it on the
test set for ImageNet; we never look at test data). The model used for the
selection is fitted without the held-out slice, which is added afterwards, so
the final statistics cover all training data. On task-incremental streams each
task keeps the α chosen when it was trained (the task is known at test time);
class-incremental and task-agnostic streams keep one α, re-chosen each task.

Logits are returned over ``label_space.class_ids`` in order. Classes never
fitted score ``-inf``; when no class of the label space is fitted (the
zero-shot row, or a future task in the task-incremental scenario) the
logits are the zero-shot ones (ensemble on) or zeros (chance).
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from cl.core.strategy import Context, Strategy, TaskData
from strategies.estimators.class_stats import IncrementalClassStats
from strategies.estimators.feature_ridge import ILL_CONDITIONED
from streams.core import LabelSpace, Stream

CLIP_LOGIT_SCALE = 100.0
DEFAULT_ALPHAS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def zero_shot_weights(backbone: Any, label_space: LabelSpace) -> torch.Tensor:
    """Zero-shot head (C, D) of ``label_space`` from :func:`cl.models.prompts.zero_shot_head`."""
    from cl.models.prompts import zero_shot_head  # lazy: the text side is optional

    return zero_shot_head(backbone, label_space.class_names, label_space.templates).float().cpu()


def held_out_split(targets: torch.Tensor, fraction: float,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified random split of sample indices into (fit, held-out).

    Each class puts ``floor(fraction · n_c)`` samples in the held-out part but
    always keeps at least one in the fit part.
    """
    fit, held = [], []
    for c in torch.unique(targets):
        idx = torch.nonzero(targets == c).ravel()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        k = min(int(fraction * len(idx)), len(idx) - 1)
        held.append(idx[:k])
        fit.append(idx[k:])
    return torch.cat(fit).sort().values, torch.cat(held).sort().values



_BLAS = ThreadpoolController()


def _single_threaded_blas() -> Any:
    """One BLAS thread for the small per-batch products of prediction.

    Scoring a batch is a (B, D)·(D, C) product of a few hundred rows; BLAS
    threads gain nothing there, and next to torch's OpenMP pool they oversubscribe
    the cores: measured on 2 cores, the 100-task synthetic NEVIS run's evaluation
    took 55 s with 2 OpenBLAS threads and 20 s with one.
    """
    return _BLAS.limit(limits=1, user_api="blas")

class TrainingFreeStrategy(Strategy):
    """Base of ``nmc`` and ``gda``: partial_fit per task, optional zero-shot ensemble.

    Subclasses set ``self.model`` (an unfitted :class:`IncrementalClassStats`),
    ``self.ensemble``, ``self.alpha_grid`` and ``self.val_fraction`` in ``__init__``.
    """

    inputs = "features"
    #: record the condition number of each task's solve (ridge and random-feature heads)
    reports_conditioning: bool = False
    model: IncrementalClassStats
    ensemble: bool
    alpha_grid: tuple[float, ...]
    val_fraction: float

    def _setup(self, model: IncrementalClassStats, ensemble: bool,
               alpha_grid: list[float] | None, val_fraction: float) -> None:
        name = type(self).__name__
        grid = tuple(float(a) for a in (DEFAULT_ALPHAS if alpha_grid is None else alpha_grid))
        if not grid or any(not np.isfinite(a) or a < 0 for a in grid):
            raise ValueError(f"{name} alpha_grid must be non-empty, finite and >= 0, got {grid}.")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"{name} val_fraction must lie in (0, 1), got {val_fraction}.")
        if not ensemble and (alpha_grid is not None or val_fraction != 0.2):
            given = "alpha_grid" if alpha_grid is not None else "val_fraction"
            raise ValueError(f"{name} option {given!r} only tunes the zero-shot ensemble, which "
                             f"ensemble=False turns off; set strategy.ensemble=true or leave "
                             f"{given!r} out.")
        model._check_params()
        self.model, self.ensemble, self.alpha_grid = model, ensemble, grid
        self.val_fraction = val_fraction
        self.alpha: float | None = None
        self.task_alpha: dict[int, float] = {}
        self._heads: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}

    # -- helpers ---------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        return hasattr(self.model, "classes_")

    def check_run(self, backbone: Any, stream: Stream) -> dict[str, Any]:
        """``ensemble`` is false on a backbone without a text tower (no zero-shot head)."""
        if self.ensemble and not getattr(backbone, "has_text", False):
            return {"ensemble": False}
        return {}

    def _use_ensemble(self, ctx: Context) -> bool:
        return self.ensemble and bool(getattr(ctx.backbone, "has_text", False))

    def _zero_shot(self, x: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        key = (ctx.backbone.fingerprint, label_space.class_ids)
        if key not in self._heads:
            self._heads[key] = zero_shot_weights(ctx.backbone, label_space)
        return CLIP_LOGIT_SCALE * x.float() @ self._heads[key].T

    def _model_logits(self, x: torch.Tensor, label_space: LabelSpace) -> torch.Tensor:
        """Estimator scores over ``label_space`` (N, C); ``-inf`` for classes never fitted."""
        out = torch.full((x.shape[0], len(label_space)), float("-inf"), dtype=torch.float32)
        ids = np.asarray(label_space.class_ids)
        classes = self.model.classes_
        pos = np.clip(np.searchsorted(classes, ids), 0, len(classes) - 1)
        known = classes[pos] == ids
        if known.any():
            with _single_threaded_blas():
                scores = self.model.trusted_class_scores(x.detach().cpu().double().numpy(),
                                                         pos[known])
            out[:, torch.from_numpy(known)] = torch.from_numpy(scores).float()
        return out

    def _combine(self, zs: torch.Tensor, model: torch.Tensor, alpha: float) -> torch.Tensor:
        return zs + alpha * model if alpha > 0 else torch.where(torch.isinf(model), model, zs)

    # -- protocol --------------------------------------------------------------------
    def train_task(self, data: TaskData, ctx: Context) -> None:
        if data.features is None:
            raise ValueError(f"{type(self).__name__} needs features; got none for {ctx.task.name!r}.")
        x, y = data.features, data.targets
        if not torch.isfinite(x).all():
            raise ValueError(
                f"features of task {ctx.task.name!r} contain NaN or inf; clear the feature cache "
                "or check the backbone."
            )
        if not self._use_ensemble(ctx):
            self._partial_fit(x, y, ctx)
            self._record_conditioning(ctx)
            return
        fit, held = held_out_split(y, self.val_fraction, ctx.generator)
        self._partial_fit(x[fit], y[fit], ctx)
        if len(held):
            self._select_alpha(x[held], y[held], ctx)
            self._partial_fit(x[held], y[held], ctx)
        else:
            ctx.logger.warning("task %s: too few samples to hold out; keeping alpha=%s",
                               ctx.task.name, self.alpha)
        if ctx.stream.scenario == "task-incremental" and self.alpha is not None:
            self.task_alpha[ctx.task_index] = self.alpha
        ctx.record("ensemble_alpha", self.alpha)
        self._record_conditioning(ctx)

    def _record_conditioning(self, ctx: Context) -> None:
        """Record the condition number of the system the estimator solved for this task
        (``records[t]["condition_number"]``) and warn above :data:`ILL_CONDITIONED`: there,
        the head depends on rounding (two correct solvers can differ by percent)."""
        cond = getattr(self.model, "condition_number_", None)
        if not self.reports_conditioning or cond is None or np.isnan(cond):
            return
        ctx.record("condition_number", float(cond))
        if cond > ILL_CONDITIONED:
            ctx.logger.warning(
                "task %s: %s solved a system with condition number %.2g (> %.0e): its head "
                "depends on rounding; a larger ridge (e.g. a fixed strategy.ridge) or fewer "
                "random features makes it well conditioned.", ctx.task.name,
                type(self).__name__, cond, ILL_CONDITIONED)

    def _partial_fit(self, x: torch.Tensor, y: torch.Tensor, ctx: Context) -> None:
        if "device" in self.model.get_params():  # heavy solves on the run's GPU, if it has one
            self.model.set_params(device=str(ctx.device) if ctx.device.type == "cuda" else None)
        try:
            self.model.partial_fit(x.double().numpy(), y.numpy())
        except ValueError as err:
            raise ValueError(f"task {ctx.task.name!r}: {err}") from err

    def _select_alpha(self, x: torch.Tensor, y: torch.Tensor, ctx: Context) -> None:
        space = ctx.label_space
        target = torch.tensor(space.index_of(y.tolist()))
        zs, model = self._zero_shot(x, space, ctx), self._model_logits(x, space)
        accs = [float((self._combine(zs, model, a).argmax(1) == target).float().mean())
                for a in self.alpha_grid]
        self.alpha = self.alpha_grid[int(np.argmax(accs))]  # first best: smallest tie
        ctx.record("ensemble_alpha_grid", list(self.alpha_grid))
        ctx.record("ensemble_val_accuracy", accs)
        ctx.record("ensemble_val_size", len(y))

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        x = inputs.detach().cpu().float()
        ensemble = self._use_ensemble(ctx)
        model = self._model_logits(x, label_space) if self.fitted else None
        if model is None or torch.isinf(model).all():
            return self._zero_shot(x, label_space, ctx) if ensemble else torch.zeros(
                x.shape[0], len(label_space), dtype=torch.float32)
        alpha = self._alpha_for(label_space, ctx)
        if not ensemble or alpha is None:
            return model
        return self._combine(self._zero_shot(x, label_space, ctx), model, alpha)

    def _alpha_for(self, label_space: LabelSpace, ctx: Context) -> float | None:
        """The ensemble weight for ``label_space``.

        Task-incremental streams score each task on its own classes, so the task
        is known: its α is the one chosen when it was trained, and later tasks
        never change it (a frozen-feature method then shows no forgetting from
        re-choosing α). Class-incremental and task-agnostic label spaces mix
        tasks: one α, re-chosen on each new task's held-out slice.
        """
        if ctx.stream.scenario == "task-incremental" and label_space.class_ids:
            task = bisect.bisect_right(ctx.stream.class_offsets, label_space.class_ids[0]) - 1
            return self.task_alpha.get(task, self.alpha)
        return self.alpha

    def memory_bytes(self) -> int:
        if not self.fitted:
            return 0
        nbytes = getattr(self.model, "statistics_nbytes", None)
        if nbytes is not None:  # without copying the statistics
            return int(nbytes())
        return sum(v.nbytes for v in self.model.get_statistics().values()
                   if isinstance(v, np.ndarray))

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"alpha": self.alpha,
                                 "task_alpha": {str(k): v for k, v in self.task_alpha.items()}}
        if self.fitted:
            state["stats"] = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                              for k, v in self.model.get_statistics().items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha = None if state.get("alpha") is None else float(state["alpha"])
        self.task_alpha = {int(k): float(v) for k, v in state.get("task_alpha", {}).items()}
        self._heads.clear()
        if "stats" in state:
            self.model.set_statistics({k: v.numpy() if isinstance(v, torch.Tensor) else v
                                       for k, v in state["stats"].items()})
        else:
            self.model._reset()
