"""The adapting-strategy base: one training loop for every strategy that trains open_clip on images.

:class:`AdaptingStrategy` owns what LoRA, CoDyRA, continual fine-tuning, LwF, WiSE-FT,
ZSCL, MoE-Adapters and SLCA share: binding the backbone, a fixed number of optimiser
steps per task over a cycled, seeded loader of the task's images, the learning rate set
before every step, loss terms summed and checked, FLOPs and examples counted, plugins'
batch hooks, gradients summed across ``torchrun`` ranks, prediction with CLIP logits,
and state for exact resume. A strategy says what differs through hooks:

=========================  ==========================================================
hook                       used for
=========================  ==========================================================
``_on_bind(model)``        keep the zero-shot weights (WiSE-FT's zero-shot anchor, ZSCL)
``_begin_task``            teacher copy, L2 / WiSE anchors, MoE routers, SLCA head
``_param_groups``          what trains: adapters, towers, experts + router, backbone + head
``_optimizer``             AdamW (default) or SGD with momentum (SLCA)
``_task_lr``               per-task learning rate (``lr_per_task``)
``_lr_factor``             cosine, warm-up + cosine, step decay
``_task_loss``             CLIP image→text loss (default), label smoothing, SLCA's head loss
``_extra_terms``           distillation on a second batch stream, L2 anchor, balance loss
``_after_step``            CoDyRA's proximal step, ZSCL's weight average
``_end_task``              merge (LoRA), interpolate (WiSE-FT), swap in the average
                           (ZSCL), activate-freeze + DDAS (MoE), alignment (SLCA)
``_logits``                predict-time routing (DDAS) or a linear head (SLCA)
``_state`` / ``_restore``  what a checkpoint holds, and writing it into a fresh backbone
=========================  ==========================================================

Backbone binding and resume
---------------------------
The strategy adapts ``ctx.backbone.model`` (an :class:`~cl.models.backbones.OpenCLIPBackbone`)
and keeps a reference to that backbone from the first ``before_task`` / ``train_task`` /
``predict`` call (or an explicit :meth:`~AdaptingStrategy.attach`). :meth:`state_dict`
holds what the model and the strategy carry after the last finished task;
:meth:`load_state_dict` keeps it pending until a backbone is bound, then ``_restore``
writes it into the model and the backbone fingerprint is refreshed (so no cached feature
of other weights is reused). Every task reseeds from ``(seed, task)``, so a run killed
at any point resumes with the uninterrupted run's numbers. ``cl export`` relies on the
same path: rebuild the backbone, ``load_state_dict``, ``attach``, save.

Several processes
-----------------
Every rank draws the same global minibatch and keeps its strided share
(:func:`cl.runtime.data.loader` with ``shard=True``). Each loss term is a mean over the
rank's examples; it is weighted by the rank's share of the global count (a term that
every rank computes identically, as an L2 anchor, by ``1/N``) and the gradients are
summed over ranks (:func:`cl.runtime.distributed.all_reduce_gradients`): the
single-process gradient for per-example losses, whatever parameters a rank did or did
not use (mixture-of-experts routing). Losses coupling the examples of a batch (CLIP's
text→image term, distillation of each text over the batch's images) are computed per
rank, an approximation.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from cl.core.flops import flop_counter
from cl.core.strategy import Context, Strategy, TaskData
from cl.runtime import accel, distributed
from cl.runtime.data import loader
from cl.runtime.seeding import rng_untouched
from strategies.adaptation.clip_objective import GrowingLabelSpace, clip_loss, prompts
from strategies.adaptation.options import TrainingOptions
from strategies.adaptation.schedule import cosine_factor
from streams.core import LabelSpace

#: one loss term: its mean over this rank's examples, and how many examples that is
#: (``None``: a term every rank computes identically, e.g. a distance between weights)
Term = tuple[torch.Tensor, int | None]


class AdaptingStrategy(Strategy):
    """Base class of the strategies that train an open_clip backbone on a task's images.

    Parameters
    ----------
    options : TrainingOptions
        The validated hyper-parameters (a subclass of
        :class:`~strategies.adaptation.options.TrainingOptions`), kept as ``self.options``.

    Class attributes
    ----------------
    label : str
        Name used in messages and progress bars.
    exportable : bool
        Whether the adapted model is a plain open_clip model (``cl export`` writes it).
    """

    inputs = "images"
    needs_text = True
    label: ClassVar[str] = "adapting"
    exportable: ClassVar[bool] = True
    counts_flops = True  # steps 0 and 1 counted in _fit

    def __init__(self, options: TrainingOptions) -> None:
        self.options = options
        self._backbone: Any = None
        self._pending: dict[str, Any] | None = None
        self._trainable = 0
        self._tasks_trained = 0
        self._text_cache: dict[tuple[LabelSpace, Hashable], torch.Tensor] = {}
        self._data: TaskData | None = None
        #: the training label space of the task being learned (positions of the targets)
        self.training_space: GrowingLabelSpace | None = None

    # -- hooks (defaults: LoRA's loop) ------------------------------------------------------
    def _check_backbone(self, backbone: Any, model: nn.Module) -> None:
        """Raise ``ValueError`` when ``backbone`` cannot be adapted (after the open_clip check)."""

    def _on_bind(self, model: nn.Module) -> None:
        """Called once, when the first backbone is bound, before any restored state is written."""

    def _restore(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Write the model part of a :meth:`state_dict` into ``model``."""
        raise NotImplementedError

    def _state(self, model: nn.Module) -> dict[str, Any]:
        """What a checkpoint holds after a finished task (tensors, numbers, strings, lists, dicts)."""
        raise NotImplementedError

    def _begin_task(self, model: nn.Module, ctx: Context) -> None:
        """Prepare the task (teacher copies, anchors, routers, heads)."""

    def _param_groups(self, model: nn.Module, ctx: Context) -> list[dict[str, Any]]:
        """Optimiser parameter groups of the task (``{"params": [...], ...}``)."""
        raise NotImplementedError

    def _optimizer(self, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
        """AdamW at rate ``lr`` with the options' betas and weight decay."""
        return torch.optim.AdamW(groups, lr=lr, betas=self.options.betas,  # type: ignore[attr-defined]
                                 weight_decay=self.options.weight_decay)

    def _task_lr(self, ctx: Context) -> float:
        """Base learning rate of task ``ctx.task_index``."""
        return self.options.lr

    def _lr_factor(self, step: int, total: int) -> float:
        """Factor of the base rate at 0-based step ``step`` of ``total``."""
        return cosine_factor(step, total)

    def _trains_text(self) -> bool:
        """Whether the text tower changes during training (prompts re-encoded every step)."""
        return False

    def _task_loss(self, model: nn.Module, image: torch.Tensor, text: torch.Tensor,
                   target: torch.Tensor) -> torch.Tensor:
        """Loss of a batch from image embeddings (B, D), prompt embeddings (C, D), positions (B,)."""
        return clip_loss(image, text, target, model.logit_scale.exp())

    def _encode_batch(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Image embeddings (B, D) the task loss sees (L2-normalised CLIP embeddings)."""
        return model.encode_image(x, normalize=True)

    def _encode_prompts(self, model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings (C, D) of tokenized prompts (C, L) in training and in
        :meth:`text_embeddings` (L2-normalised CLIP embeddings)."""
        return model.encode_text(tokens, normalize=True)

    def _extra_terms(self, model: nn.Module, step: int, ctx: Context) -> list[Term]:
        """Loss terms added to the task loss at ``step``."""
        return []

    def _after_step(self, iteration: int, total: int) -> None:
        """Called after every optimiser step (CoDyRA's proximal step)."""

    def _abort(self, model: nn.Module) -> None:
        """Undo what ``_param_groups`` placed when training fails."""

    def _end_task(self, model: nn.Module, data: TaskData | None, ctx: Context) -> None:
        """Transform the model after the task (``data``: the task's training data)."""

    def _logits(self, model: nn.Module, images: torch.Tensor, label_space: LabelSpace
                ) -> torch.Tensor:
        """Logits (N, C) of preprocessed images (default: CLIP logits, see :meth:`clip_logits`)."""
        with self.autocast(images.device):
            image = model.encode_image(images, normalize=True)
        return self.clip_logits(model, image, label_space)

    # -- backbone binding ------------------------------------------------------------------
    def attach(self, backbone: Any) -> Any:
        """Bind the open_clip backbone to adapt; apply state from :meth:`load_state_dict`.

        Raises
        ------
        ValueError
            Not an open_clip backbone, a tower the options need is missing, or pending
            state that does not fit the model.
        """
        if backbone is self._backbone and self._pending is None:
            return backbone
        model = getattr(backbone, "model", None)
        name = getattr(backbone, "name", type(backbone).__name__)
        if not isinstance(model, nn.Module) or not hasattr(backbone, "tokenizer"):
            raise ValueError(
                f"{self.label} adapts an open_clip model, but backbone {name!r} has none; use "
                "an open_clip backbone such as 'ViT-B-16:openai' or 'cl-tiny-vit'."
            )
        self._check_backbone(backbone, model)
        if backbone is not self._backbone:
            self._on_bind(model)
        self._backbone = backbone
        if self._pending is not None:
            with rng_untouched():  # modules it builds draw weights the state overwrites
                self._restore(model, self._pending)
            model.eval()  # modules a restore adds start in training mode
            self._pending = None
            self._weights_changed()
        return backbone

    def write_parameters(self, model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
        """Copy ``{name: tensor}`` into the model's parameters of those names.

        Raises
        ------
        ValueError
            A name the model lacks, or a tensor of another shape.
        """
        params = dict(model.named_parameters())
        bad = [k for k, v in weights.items() if k not in params or params[k].shape != v.shape]
        if bad:
            raise ValueError(
                f"{self.label} state does not fit backbone {self._backbone.name!r}: "
                f"{bad[:3]} missing or of another shape; resume with the run's own backbone."
            )
        with torch.no_grad():
            for key, value in weights.items():
                params[key].copy_(torch.as_tensor(value))

    def _weights_changed(self) -> None:
        self._text_cache.clear()
        self._backbone.refresh_fingerprint()

    def autocast(self, device: torch.device) -> torch.autocast:
        """bf16 autocast on CUDA when ``options.amp``; a disabled context otherwise."""
        return torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=self.options.amp and device.type == "cuda")

    # -- the protocol ------------------------------------------------------------------------
    def before_task(self, ctx: Context) -> None:
        model = self.attach(ctx.backbone).model
        self._begin_task(model, ctx)

    def train_task(self, data: TaskData, ctx: Context) -> None:
        model = self.attach(ctx.backbone).model
        groups = self._param_groups(model, ctx)
        params = [p for group in groups for p in group["params"]]
        self._trainable = sum(p.numel() for p in params)
        self._text_cache.clear()
        self._data = data
        try:
            self._fit(model, groups, data, ctx)
        except BaseException:
            self._abort(model)
            model.eval()
            raise
        finally:
            accel.uncompile_module(model.visual)
            for p in params:
                p.requires_grad_(False)

    def _fit(self, model: nn.Module, groups: list[dict[str, Any]], data: TaskData,
             ctx: Context) -> None:
        params = [p for group in groups for p in group["params"]]
        for p in params:
            p.requires_grad_(True)
        device = next(model.parameters()).device
        space = self.training_space = GrowingLabelSpace(ctx.label_space, ctx.stream)
        total = self.options.iterations
        lr = self._task_lr(ctx)
        opt = self._optimizer(groups, lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: self._lr_factor(i, total))
        tokenizer = self._backbone.tokenizer
        text_trains = self._trains_text()
        autocast = self.autocast(device)
        batches = self.cycle(data.dataset, self.options.batch_size, ctx.generator, ctx)
        task = ctx.task.name
        several = distributed.world_size() > 1
        accel.channels_last(model.visual, device)  # convolutional towers on CUDA only
        if self.options.compile:
            accel.compile_module(model.visual)
        model.train()
        for i in tqdm(range(total), desc=f"{self.label} {task}", leave=False,
                      disable=not ctx.progress):
            # FLOPs: step 0 (with the prompt encoding) and step 1 (a steady step) are counted;
            # the task's total is flops(0) + flops(1) * (iterations - 1).
            counting = flop_counter() if i < 2 else nullcontext()
            with counting:
                x, y = ctx.before_batch(*next(batches))
                target = torch.as_tensor(space.positions(y.tolist()), device=device)
                with autocast:
                    if space.changed or text_trains:
                        tokens = tokenizer(space.prompts()).to(device)
                        with torch.set_grad_enabled(text_trains):
                            text = self._encode_prompts(model, tokens)
                        space.changed = False
                    image = self._encode_batch(model, x.to(device)) if len(x) else None
                task_loss = (self._task_loss(model, image, text, target) if image is not None
                             else torch.zeros((), device=device))
                terms: list[Term] = [(task_loss, len(x)), *self._extra_terms(model, i, ctx)]
                terms = [(v if n != 0 else v.detach().new_zeros(()), n) for v, n in terms]
                loss = terms[0][0]
                for value, _ in terms[1:]:
                    loss = loss + value
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{self.label} loss became {loss.item()} at iteration {i} of task {task!r}; "
                        f"the learning rate lr={lr} is too high, lower it "
                        f"(e.g. --set strategy.lr={lr / 10:g})."
                    )
                objective, seen = loss, len(x)
                if several:  # each rank's share of the global count (see module docstring)
                    counts = distributed.sum_counts(*(n or 0 for _, n in terms))
                    objective = sum(value * (n / c if c else 0.0) if n is not None
                                    else value / distributed.world_size()
                                    for (value, n), c in zip(terms, counts, strict=True))
                    seen = counts[0]
                opt.zero_grad(set_to_none=True)
                if objective.requires_grad:
                    objective.backward()
            distributed.all_reduce_gradients(params)
            if i < 2:
                repeats = 1 if i == 0 else total - 1
                ctx.count("train_flops", counting.get_total_flops() * repeats)
            opt.step()
            sched.step()
            self._after_step(i, total)
            ctx.count("examples_seen", seen)
            ctx.after_batch(loss.detach())
        model.eval()
        if not all(torch.isfinite(p).all() for p in params):
            raise FloatingPointError(
                f"{self.label} weights became non-finite in task {task!r}; lower lr (now {lr})."
            )

    def cycle(self, dataset: Dataset | None, batch_size: int, generator: torch.Generator,
              ctx: Context) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless shuffled minibatches of ``dataset`` (this rank's share of each global batch)."""
        if dataset is None:
            raise ValueError(f"{self.label} trains on images; TaskData.dataset is missing.")
        batches = loader(dataset, batch_size=batch_size, shuffle=True, generator=generator,
                         num_workers=ctx.num_workers, shard=True, persistent=True)
        while True:
            for x, y in batches:
                yield x, torch.as_tensor(y)

    def after_task(self, ctx: Context) -> None:
        """Apply the strategy's end-of-task transform; count the task as learned."""
        model = self.attach(ctx.backbone).model
        self._end_task(model, self._data, ctx)
        self._data = None
        model.eval()
        self._tasks_trained += 1
        self._weights_changed()

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        """Logits (N, C) of a batch of preprocessed images over ``label_space``."""
        model = self.attach(ctx.backbone).model
        device = next(model.parameters()).device
        with torch.no_grad():
            return self._logits(model, inputs.to(device), label_space).cpu()

    def text_embeddings(self, model: nn.Module, label_space: LabelSpace,
                        key: Hashable = None) -> torch.Tensor:
        """L2-normalised first-template prompt embeddings (C, D), float32, cached per
        (label space, ``key``) until the weights change (``key``: e.g. the MoE route)."""
        text = self._text_cache.get((label_space, key))
        if text is None:
            device = next(model.parameters()).device
            with self.autocast(device):
                tokens = self._backbone.tokenizer(prompts(label_space)).to(device)
                text = self._encode_prompts(model, tokens)
            text = self._text_cache[(label_space, key)] = text.float()
        return text

    def clip_logits(self, model: nn.Module, image: torch.Tensor, label_space: LabelSpace,
                    key: Hashable = None) -> torch.Tensor:
        """CLIP logits ``s · î·t̂ᵀ`` (N, C) of image embeddings î (N, D) over ``label_space``."""
        text = self.text_embeddings(model, label_space, key)
        return model.logit_scale.exp().float() * image.float() @ text.T

    # -- reporting and resume ------------------------------------------------------------------
    def trainable_parameters(self) -> int:
        return self._trainable

    def state_dict(self) -> dict[str, Any]:
        if self._tasks_trained == 0 and self._pending is None:
            return {}
        state = self._pending if self._pending is not None else self._state(self._backbone.model)
        return {**state, "trainable_parameters": self._trainable,
                "tasks_trained": self._tasks_trained}

    def set_hyperparameters(self, values: Mapping[str, Any]) -> None:
        """Set searchable options (:attr:`searchable`) in :attr:`options`, validated again.

        Raises
        ------
        ValueError
            A name the strategy does not declare searchable, or a bad value.
        """
        unknown = [k for k in values if k not in self.searchable]
        if unknown:
            raise ValueError(f"{self.label} has no searchable hyper-parameter {unknown[0]!r}; "
                             f"searchable: {', '.join(self.searchable) or '(none)'}.")
        self.options = replace(self.options, **values)

    def _reset(self) -> None:
        """Forget what earlier tasks left in the strategy (``load_state_dict({})``)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; ``{}`` is the state before any task (the caller
        restores the backbone's own weights, as the per-task search does between trials)."""
        if not state:
            self._pending, self._trainable, self._tasks_trained = None, 0, 0
            self._text_cache.clear()
            self._reset()
            return
        state = dict(state)
        self._trainable = int(state.pop("trainable_parameters"))
        self._tasks_trained = int(state.pop("tasks_trained"))
        self._pending = state
        if self._backbone is not None:
            self.attach(self._backbone)


__all__ = ["AdaptingStrategy", "Term"]
