"""Shared machinery of the strategies that adapt open_clip in place and merge after each task.

:class:`MergedAdapterStrategy` owns the loop every such strategy shares
(CoDyRA, Lu et al. arXiv 2412.01004, training protocol): place adapters on the
chosen linears, train them for a fixed number of iterations on the CLIP
image→text cross-entropy with AdamW and a cosine schedule, fold them into the
frozen weights after the task, and predict with plain CLIP. Subclasses say how
adapters are built, stepped and merged.

Backbone binding and resume
---------------------------
The strategy adapts ``ctx.backbone.model`` (an :class:`~cl.models.backbones.OpenCLIPBackbone`)
and keeps a reference to that backbone from the first ``before_task`` /
``train_task`` / ``predict`` call (or an explicit :meth:`attach`).
:meth:`state_dict` holds the *current values* of every base weight merging
changes (attention ``in_proj_weight`` / ``out_proj.weight``, MLP ``c_fc`` /
``c_proj`` weights of the adapted towers), so a checkpoint restores the merged
model exactly. :meth:`load_state_dict` keeps them pending until a backbone is
bound, then writes them into the model and refreshes the backbone fingerprint
(so no cached feature of other weights is reused). ``cl export`` relies on this:
rebuild the backbone from the run config, ``load_state_dict``, ``attach``, save.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from cl.core.strategy import Context, Strategy, TaskData
from cl.runtime import distributed
from cl.runtime.data import loader
from strategies.lora.config import LoraOptions
from strategies.lora.placement import (
    adapted_parameters,
    check_model,
    prepare,
    restore_attention,
    towers_of,
)
from streams.core import LabelSpace


def clip_loss(
    image: torch.Tensor, text: torch.Tensor, target: torch.Tensor, scale: torch.Tensor,
    *, text_to_image: bool = False, label_smoothing: float = 0.0,
) -> torch.Tensor:
    """CLIP classification loss of one batch.

    Image→text: ``CE(s · î·t̂ᵀ, y)`` over the label-space prompts (CLIP's
    zero-shot logits as a classifier). With ``text_to_image`` the reference
    code's second term is added: ``CE(s · t̂·îᵀ, M)`` with soft targets
    ``M[c, b] = [y_b = c]`` (C×B), i.e. ``(1/C) Σ_c Σ_b M[c,b] · −log softmax_b``;
    classes absent from the batch contribute 0 but count in the mean.
    ``label_smoothing`` smooths the image→text targets (``F.cross_entropy``'s).

    Parameters
    ----------
    image : (B, D) L2-normalised image embeddings î
    text : (C, D) L2-normalised prompt embeddings t̂
    target : (B,) int64 positions in the label space
    scale : scalar tensor, CLIP's ``logit_scale.exp()``
    """
    logits = scale * image.float() @ text.float().T
    loss = F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    if text_to_image:
        mask = (target[None, :] == torch.arange(len(text), device=target.device)[:, None]).float()
        loss = loss + F.cross_entropy(logits.T, mask)
    return loss


def cosine_factor(iteration: int, total: int) -> float:
    """Learning-rate factor ``½(1 + cos(π·i/T))`` (cosine schedule, no warm-up, as the reference)."""
    return 0.5 * (1.0 + math.cos(math.pi * iteration / total))


class MergedAdapterStrategy(Strategy):
    """Base class: adapters trained per task on images, merged into open_clip after it.

    Parameters
    ----------
    options : LoraOptions
        The validated hyper-parameters (:class:`~strategies.lora.config.LoraOptions`),
        kept as ``self.options``.
    """

    inputs = "images"
    needs_text = True
    label: str = "adapter"
    searchable: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "lr": ("log-uniform", 1e-4, 1e-1), "label_smoothing": ("uniform", 0.0, 0.3)}

    def __init__(self, options: LoraOptions) -> None:
        self.options = options
        self._backbone: Any = None
        self._pending: dict[str, torch.Tensor] | None = None
        self._ranks: dict[str, int] = {}
        self._trainable = 0
        self._tasks_trained = 0
        self._text_cache: dict[LabelSpace, torch.Tensor] = {}

    # -- subclass hooks ----------------------------------------------------------------
    def _inject(
        self, model: nn.Module, names: list[str], generator: torch.Generator
    ) -> list[nn.Parameter]:
        """Place fresh adapters on modules ``names``; return their trainable parameters."""
        raise NotImplementedError

    def _after_step(self, iteration: int, total: int) -> None:
        """Called after every optimiser step (CoDyRA's proximal step)."""

    def _kept_ranks(self) -> dict[str, int]:
        """{module name: rank that merging keeps}."""
        raise NotImplementedError

    def _delta_norms(self) -> dict[str, float]:
        """{module name: ‖ΔW‖_F} of the current adapters."""
        raise NotImplementedError

    def _unload(self, model: nn.Module, merge: bool) -> None:
        """Replace adapted modules by their base linears, merging ΔW first when ``merge``."""
        raise NotImplementedError

    def set_hyperparameters(self, values: Mapping[str, Any]) -> None:
        """Set searchable options (``lr``, ``label_smoothing``) in :attr:`options` (validated)."""
        unknown = [k for k in values if k not in self.searchable]
        if unknown:
            raise ValueError(f"{self.label} has no searchable hyper-parameter {unknown[0]!r}; "
                             f"searchable: {', '.join(self.searchable)}.")
        self.options = replace(self.options, **values)

    # -- backbone binding ------------------------------------------------------------------
    def attach(self, backbone: Any) -> Any:
        """Bind the open_clip backbone to adapt; apply weights from :meth:`load_state_dict`.

        Raises
        ------
        ValueError
            Not an open_clip backbone, a tower of ``encoders`` missing (e.g.
            ``encoders="text"`` on a model without a text tower), or pending weights
            that do not fit the model.
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
        if "text" in towers_of(self.options.encoders) and not getattr(backbone, "has_text", False):
            raise ValueError(
                f"{self.label} encoders={self.options.encoders!r} adapts the text tower, but backbone "
                f"{name!r} has no text tower; use encoders='vision'."
            )
        check_model(model, self.options.encoders)
        self._backbone = backbone
        if self._pending is not None:
            self._write_weights(model, self._pending)
            self._pending = None
            self._weights_changed()
        return backbone

    def _write_weights(self, model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        bad = [k for k, v in weights.items() if k not in params or params[k].shape != v.shape]
        if bad:
            raise ValueError(
                f"{self.label} state does not fit backbone {self._backbone.name!r}: "
                f"{bad[:3]} missing or of another shape; resume with the run's own backbone."
            )
        with torch.no_grad():
            for key, value in weights.items():
                params[key].copy_(value)

    def _weights_changed(self) -> None:
        self._text_cache.clear()
        self._backbone.refresh_fingerprint()

    # -- the protocol -------------------------------------------------------------------------
    def before_task(self, ctx: Context) -> None:
        self.attach(ctx.backbone)

    def train_task(self, data: TaskData, ctx: Context) -> None:
        backbone = self.attach(ctx.backbone)
        model = backbone.model
        names = prepare(model, self.options.encoders, self.options.targets)
        params = self._inject(model, names, ctx.generator)
        self._trainable = sum(p.numel() for p in params)
        self._text_cache.clear()
        try:
            self._fit(model, params, data, ctx)
        except BaseException:
            self._unload(model, merge=False)  # back to the model of the previous task
            restore_attention(model)
            model.eval()
            raise

    def _fit(
        self, model: nn.Module, params: list[nn.Parameter], data: TaskData, ctx: Context
    ) -> None:
        device = next(model.parameters()).device
        space = _GrowingLabelSpace(ctx.label_space, ctx.stream)
        opt = torch.optim.AdamW(params, lr=self.options.lr, betas=self.options.betas, weight_decay=self.options.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: cosine_factor(i, self.options.iterations))
        tokenizer = self._backbone.tokenizer
        text_trains = "text" in towers_of(self.options.encoders)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                  enabled=self.options.amp and device.type == "cuda")
        batches = self._cycle(data, ctx)
        task = ctx.task.name
        ddp = distributed.wrap_ddp(model)  # None in a single process
        model.train()
        for i in tqdm(range(self.options.iterations), desc=f"{self.label} {task}", leave=False,
                      disable=not ctx.progress):
            # FLOPs: step 0 (with the prompt encoding) and step 1 (a steady step) are counted;
            # the task's total is flops(0) + flops(1) * (iterations - 1).
            counting = FlopCounterMode(display=False) if i < 2 else nullcontext()
            with counting:
                x, y = ctx.before_batch(*next(batches))
                target = torch.as_tensor(space.positions(y.tolist()), device=device)
                with autocast:
                    if space.changed or text_trains:
                        tokens = tokenizer(space.prompts()).to(device)
                        if ddp is None or not text_trains:
                            with torch.set_grad_enabled(text_trains):
                                text = model.encode_text(tokens, normalize=True)
                        space.changed = False
                    if ddp is None:
                        image = model.encode_image(x.to(device), normalize=True)
                    else:  # through DDP's forward so gradients are averaged across ranks
                        image, text_out = ddp(image=x.to(device), text=tokens if text_trains else None)[:2]
                        text = text_out if text_trains else text
                loss = clip_loss(image, text, target, model.logit_scale.exp(),  # fp32, outside autocast
                                 text_to_image=self.options.text_to_image,
                                 label_smoothing=self.options.label_smoothing)
                seen = len(x)
                if ddp is not None:
                    seen = distributed.sum_counts(len(x))[0]
                    loss = distributed.global_mean_loss(loss, len(x), seen, anchor=image)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{self.label} loss became {loss.item()} at iteration {i} of task {task!r}; "
                        f"the learning rate lr={self.options.lr} is too high, lower it "
                        f"(e.g. --set strategy.lr={self.options.lr / 10:g})."
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
            if i < 2:
                repeats = 1 if i == 0 else self.options.iterations - 1
                ctx.count("train_flops", counting.get_total_flops() * repeats)
            opt.step()
            sched.step()
            self._after_step(i, self.options.iterations)
            ctx.count("examples_seen", seen)
            ctx.after_batch(loss.detach())
        model.eval()
        if not all(torch.isfinite(p).all() for p in params):
            raise FloatingPointError(
                f"{self.label} adapter weights became non-finite in task {task!r}; lower lr "
                f"(now {self.options.lr})."
            )

    def _cycle(self, data: TaskData, ctx: Context) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if data.dataset is None:
            raise ValueError(f"{self.label} trains on images; TaskData.dataset is missing.")
        while True:
            for x, y in loader(data.dataset, batch_size=self.options.batch_size, shuffle=True,
                               generator=ctx.generator, num_workers=ctx.num_workers, shard=True):
                yield x, torch.as_tensor(y)

    def after_task(self, ctx: Context) -> None:
        """Fold the adapters into the weights; record ranks and update norms."""
        model = self.attach(ctx.backbone).model
        norms = self._delta_norms()
        self._ranks = self._kept_ranks()
        self._unload(model, merge=True)
        restore_attention(model)
        model.eval()
        self._tasks_trained += 1
        self._weights_changed()
        ctx.record("effective_ranks", dict(self._ranks))
        ctx.record("allocated_rank", self.options.rank)
        ctx.record("update_frobenius_norms", norms)
        ctx.record("update_frobenius_norm", math.sqrt(sum(v * v for v in norms.values())))

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        """CLIP logits ``s · î·t̂ᵀ`` (N, C) over the first-template prompts of ``label_space``."""
        model = self.attach(ctx.backbone).model
        device = next(model.parameters()).device
        autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                  enabled=self.options.amp and device.type == "cuda")
        with torch.no_grad():
            text = self._text_cache.get(label_space)
            if text is None:
                with autocast:
                    tokens = self._backbone.tokenizer(prompts(label_space)).to(device)
                    text = model.encode_text(tokens, normalize=True)
                text = self._text_cache[label_space] = text.float()
            with autocast:
                image = model.encode_image(inputs.to(device), normalize=True)
            return (model.logit_scale.exp().float() * image.float() @ text.T).cpu()

    # -- reporting and resume ------------------------------------------------------------------
    def effective_ranks(self) -> dict[str, int]:
        """{module name: rank kept} of the last merged task (empty before any)."""
        return dict(self._ranks)

    def trainable_parameters(self) -> int:
        return self._trainable

    def state_dict(self) -> dict[str, Any]:
        if self._tasks_trained == 0 and self._pending is None:
            return {}
        weights = self._pending
        if weights is None:
            model = self._backbone.model
            params = dict(model.named_parameters())
            weights = {k: params[k].detach().cpu().clone()
                       for k in adapted_parameters(model, self.options.encoders, self.options.targets)}
        return {"weights": weights, "effective_ranks": dict(self._ranks),
                "trainable_parameters": self._trainable, "tasks_trained": self._tasks_trained}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:  # the state before any task (the caller restores the backbone's weights)
            self._pending, self._ranks, self._trainable, self._tasks_trained = None, {}, 0, 0
            self._text_cache.clear()
            return
        self._pending = {k: torch.as_tensor(v) for k, v in state["weights"].items()}
        self._ranks = {k: int(v) for k, v in state["effective_ranks"].items()}
        self._trainable = int(state["trainable_parameters"])
        self._tasks_trained = int(state["tasks_trained"])
        if self._backbone is not None:
            self.attach(self._backbone)


def prompts(label_space: LabelSpace) -> list[str]:
    """First-template prompt of every class, e.g. ``"a photo of a 3."``."""
    return [label_space.templates[i][0].format(name)
            for i, name in enumerate(label_space.class_names)]


class _GrowingLabelSpace:
    """The training label space, extended by classes a plugin replays from other tasks."""

    def __init__(self, label_space: LabelSpace, stream: Any) -> None:
        self.space, self.stream = label_space, stream
        self.changed = True
        self._pos = {g: i for i, g in enumerate(label_space.class_ids)}

    def positions(self, global_ids: list[int]) -> list[int]:
        extra = sorted({g for g in global_ids if g not in self._pos})
        if extra:
            everything = self.stream.task_label_space(range(len(self.stream)))
            where = {g: i for i, g in enumerate(everything.class_ids)}
            missing = [g for g in extra if g not in where]
            if missing:
                raise ValueError(f"training labels {missing[:5]} are not classes of the stream.")
            s = self.space
            idx = [where[g] for g in extra]
            self.space = LabelSpace(
                s.class_ids + tuple(everything.class_ids[i] for i in idx),
                s.class_names + tuple(everything.class_names[i] for i in idx),
                s.templates + tuple(everything.templates[i] for i in idx),
            )
            self._pos = {g: i for i, g in enumerate(self.space.class_ids)}
            self.changed = True
        return [self._pos[g] for g in global_ids]

    def prompts(self) -> list[str]:
        return prompts(self.space)


__all__ = ["MergedAdapterStrategy", "clip_loss", "cosine_factor", "prompts"]
