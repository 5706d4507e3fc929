"""``TrainingStrategy``: the public base for strategies that train, so a method is the method.

Subclass it and write only what your method is::

    class MyMethod(TrainingStrategy):
        def build(self, model, ctx):            # once: the modules the method adds
            return {"head": nn.Linear(model.visual.output_dim, ctx.stream.n_classes)}

        def loss(self, model, images, targets, ctx):   # one training batch
            return F.cross_entropy(self.head(model.encode_image(images)), targets)

        def logits(self, model, images, label_space):  # prediction
            return self.head(model.encode_image(images))[:, list(label_space.class_ids)]

The loop is the one every adaptation baseline of the library runs on
(:class:`~strategies.adaptation.base.AdaptingStrategy`): ``options.iterations`` optimiser
steps per task over a cycled loader of the task's images shuffled by the task's seeded
generator, the optimiser and rate schedule of the options
(:class:`~strategies.adaptation.options.TrainerOptions`), bf16 autocast on CUDA with
``amp``, FLOPs and examples counted, the plugins' batch hooks (replay works), gradients
summed over ``torchrun`` ranks, a clear error when the loss is not finite, progress bars.
The base also does the bookkeeping: :meth:`trainable_parameters` (what the optimiser
updated in the last task), :meth:`memory_bytes` (the parameters and buffers of the
modules :meth:`build` added) and :meth:`state_dict` / :meth:`load_state_dict` (those
modules, any backbone parameter your method trained, and :meth:`extra_state`), so a
killed run resumes with the uninterrupted run's numbers.

Public hooks
------------
=============================================  ================================================
hook                                           default
=============================================  ================================================
``build(model, ctx) -> {name: module}``        ``{}``; each module becomes ``self.<name>``,
                                               on the backbone's device, frozen and in eval
                                               mode outside training
``trainable_modules(model, ctx)``              every module :meth:`build` returned
``loss(model, images, targets, ctx)``          CLIP's image→text cross-entropy
``begin_task(model, ctx)``                     nothing (before the task's first step)
``end_task(model, data, ctx)``                 nothing (after its last step)
``logits(model, images, label_space)``         CLIP logits ``s · î·t̂ᵀ``
``extra_state()`` / ``load_extra_state(s)``    ``{}`` / nothing
=============================================  ================================================

``model`` is the open_clip model (``ctx.backbone.model``); its weights are frozen unless
:meth:`trainable_modules` returns some of its modules. For token-level access to its
vision tower (prompts after [CLS], prefix keys and values) use :mod:`cl.models.tokens`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cl.core.strategy import Context, TaskData
from cl.runtime.seeding import rng_untouched
from strategies.adaptation.base import AdaptingStrategy
from strategies.adaptation.options import TrainerOptions
from strategies.adaptation.schedule import cosine_factor, warmup_cosine_factor
from streams.core import LabelSpace


class TrainingStrategy(AdaptingStrategy):
    """Base class of a strategy that trains modules on a task's images (see module docstring).

    Parameters
    ----------
    options : TrainerOptions, optional
        Validated hyper-parameters (an instance of :attr:`options_class`).
    **overrides
        Fields of the options to change; with :attr:`options_class` these are the
        strategy's config options (``--set strategy.lr=0.01``).

    Class attributes
    ----------------
    options_class : type
        The frozen dataclass of the options (a subclass of ``TrainerOptions`` for your own).
    label : str
        Name in messages and progress bars.
    """

    options_class: ClassVar[type[TrainerOptions]] = TrainerOptions
    label: ClassVar[str] = "training"
    exportable: ClassVar[bool] = False
    options: TrainerOptions

    def __init__(self, options: TrainerOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(replace(options or self.options_class(), **overrides))
        self._modules: nn.ModuleDict | None = None
        self._saved: dict[str, Any] | None = None
        self._trained_backbone: list[str] = []
        self._context: Context | None = None

    # -- public hooks ------------------------------------------------------------------------
    def build(self, model: nn.Module, ctx: Context) -> Mapping[str, nn.Module]:
        """The modules the method adds (prompts, keys, heads), by attribute name.

        Called once, at the first ``before_task`` or ``predict`` of the run (and again
        after ``load_state_dict({})``). Each becomes ``self.<name>``; restored state is
        written into them after this call.
        """
        return {}

    def trainable_modules(self, model: nn.Module, ctx: Context
                          ) -> Iterable[nn.Module | nn.Parameter]:
        """What the optimiser updates in task ``ctx.task_index`` (default: every built module)."""
        return list(self._modules.values()) if self._modules is not None else []

    def loss(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
             ctx: Context) -> torch.Tensor:
        """Loss (a mean over the batch) of preprocessed ``images`` (B, 3, H, W) with global
        class ids ``targets`` (B,); default: CLIP's image→text cross-entropy over
        ``ctx.label_space`` (Radford et al. 2021, §3.1.2)."""
        image = model.encode_image(images, normalize=True)
        return F.cross_entropy(self.clip_logits(model, image, ctx.label_space),
                               torch.as_tensor(ctx.label_space.index_of(targets.tolist()),
                                               device=images.device))

    def begin_task(self, model: nn.Module, ctx: Context) -> None:
        """Prepare task ``ctx.task_index`` before its first step."""

    def end_task(self, model: nn.Module, data: TaskData, ctx: Context) -> None:
        """Finish the task after its last step (``data``: its training data)."""

    def logits(self, model: nn.Module, images: torch.Tensor, label_space: LabelSpace
               ) -> torch.Tensor:
        """Logits (N, len(label_space)) of preprocessed images; default: CLIP's."""
        return self.clip_logits(model, model.encode_image(images, normalize=True), label_space)

    def extra_state(self) -> dict[str, Any]:
        """State besides the built modules' tensors (numbers, strings, tensors, lists, dicts)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`'s output."""

    # -- bookkeeping -------------------------------------------------------------------------
    def memory_bytes(self) -> int:
        """Bytes of the parameters and buffers of the built modules."""
        if self._modules is None:
            return 0
        tensors = [*self._modules.parameters(), *self._modules.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def _ensure_built(self, model: nn.Module, ctx: Context) -> None:
        if self._modules is None:
            modules = self._build_restored(model, ctx) if self._saved is not None else dict(
                self.build(model, ctx))
            taken = [n for n in modules if n in vars(self) or hasattr(type(self), n)
                     or hasattr(nn.ModuleDict, n) or not n.isidentifier()]
            if taken:
                raise ValueError(f"{self.label}.build returned module {taken[0]!r}, a name the "
                                 "strategy (or nn.ModuleDict) already uses or not an "
                                 "identifier; rename it.")
            device = next(model.parameters()).device
            self._modules = nn.ModuleDict(modules).to(device).requires_grad_(False).eval()
            for name, module in self._modules.items():
                setattr(self, name, module)
        if self._saved is not None:
            self._load_saved(model)

    def _build_restored(self, model: nn.Module, ctx: Context) -> dict[str, nn.Module]:
        """``build`` for modules whose weights a checkpoint is about to overwrite: the fresh run
        built them at an earlier task, so neither ``ctx.generator`` nor torch's global RNG may
        move now (the resumed task's shuffling and dropout must be the fresh run's)."""
        spare = torch.Generator(device=ctx.generator.device)
        spare.set_state(ctx.generator.get_state())
        with rng_untouched():
            return dict(self.build(model, replace(ctx, generator=spare)))

    def _load_saved(self, model: nn.Module) -> None:
        state, self._saved = self._saved, None
        assert self._modules is not None
        try:
            self._modules.load_state_dict({k: torch.as_tensor(v)
                                           for k, v in state["modules"].items()})
        except RuntimeError as err:
            raise ValueError(f"{self.label} state does not fit the modules build() made: "
                             f"{str(err).splitlines()[0]}; resume with the run's own options "
                             "and backbone.") from None
        self.load_extra_state(state["extra"])

    def _param_groups(self, model: nn.Module, ctx: Context) -> list[dict[str, Any]]:
        params: list[nn.Parameter] = []
        for item in self.trainable_modules(model, ctx):
            params += [item] if isinstance(item, nn.Parameter) else list(item.parameters())
        params = list({id(p): p for p in params}.values())
        owned = {id(p): name for name, p in model.named_parameters()}
        self._trained_backbone = sorted({*self._trained_backbone,
                                         *(owned[id(p)] for p in params if id(p) in owned)})
        if not params:
            raise ValueError(f"{self.label}: trainable_modules() gave no parameters to train.")
        return [{"params": params}]

    def _optimizer(self, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
        o = self.options
        if o.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr, momentum=o.momentum,
                                                         weight_decay=o.weight_decay)
        else:
            kind = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
            opt = kind(groups, lr=lr, betas=o.betas, weight_decay=o.weight_decay)
        if o.clip_grad_norm > 0:
            params = [p for g in groups for p in g["params"]]

            def clip(*_: Any) -> None:  # after the gradients are summed over ranks
                nn.utils.clip_grad_norm_(params, o.clip_grad_norm)

            opt.register_step_pre_hook(clip)
        return opt

    def _lr_factor(self, step: int, total: int) -> float:
        o = self.options
        if o.schedule == "constant":
            return min(1.0, (step + 1) / o.warmup) if o.warmup else 1.0
        return warmup_cosine_factor(step, total, o.warmup) if o.warmup else cosine_factor(
            step, total)

    # -- wiring into the loop ----------------------------------------------------------------
    def _begin_task(self, model: nn.Module, ctx: Context) -> None:
        self._ensure_built(model, ctx)
        self.begin_task(model, ctx)

    def train_task(self, data: TaskData, ctx: Context) -> None:
        self._ensure_built(self.attach(ctx.backbone).model, ctx)
        self._context, options = ctx, self.options
        if options.epochs:  # the loop runs options.iterations steps
            n = len(data.dataset) if data.dataset is not None else 0  # type: ignore[arg-type]
            steps = -(-n // options.batch_size) * options.epochs
            self.options = replace(options, iterations=max(steps, 1))
        try:
            super().train_task(data, ctx)
        finally:
            self._context, self.options = None, options

    def _fit(self, model: nn.Module, groups: list[dict[str, Any]], data: TaskData,
             ctx: Context) -> None:
        assert self._modules is not None
        self._modules.train()
        try:
            super()._fit(model, groups, data, ctx)
        finally:
            self._modules.eval()

    def _encode_batch(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x  # the images: loss() runs the forward pass

    def _task_loss(self, model: nn.Module, image: torch.Tensor, text: torch.Tensor,
                   target: torch.Tensor) -> torch.Tensor:
        assert self._context is not None and self.training_space is not None
        ids = torch.as_tensor(self.training_space.space.class_ids, device=target.device)[target]
        with self.autocast(image.device):
            return self.loss(model, image, ids, self._context)

    def _end_task(self, model: nn.Module, data: TaskData | None, ctx: Context) -> None:
        if data is None:
            raise RuntimeError(f"{self.label}: after_task needs train_task first.")
        self.end_task(model, data, ctx)

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context
                ) -> torch.Tensor:
        """Logits (N, C) of a batch of preprocessed images over ``label_space``."""
        self._ensure_built(self.attach(ctx.backbone).model, ctx)
        return super().predict(inputs, label_space, ctx)

    def _logits(self, model: nn.Module, images: torch.Tensor, label_space: LabelSpace
                ) -> torch.Tensor:
        with self.autocast(images.device):
            return self.logits(model, images, label_space).float()

    # -- state -------------------------------------------------------------------------------
    def _state(self, model: nn.Module) -> dict[str, Any]:
        params = dict(model.named_parameters())
        modules = self._modules.state_dict() if self._modules is not None else {}
        return {"modules": {k: v.detach().cpu().clone() for k, v in modules.items()},
                "backbone": {k: params[k].detach().cpu().clone() for k in self._trained_backbone},
                "extra": self.extra_state()}

    def _restore(self, model: nn.Module, state: dict[str, Any]) -> None:
        self.write_parameters(model, state["backbone"])
        self._trained_backbone = sorted(state["backbone"])
        self._saved = {"modules": state["modules"], "extra": state["extra"]}
        if self._modules is not None:
            self._load_saved(model)

    def _reset(self) -> None:
        for name in self._modules or {}:
            delattr(self, name)
        self._modules, self._saved, self._trained_backbone = None, None, []


__all__ = ["TrainingStrategy"]
