"""``contrastive-ft``: sequential CLIP contrastive fine-tuning on image-text pairs, and the
training loop the other image-text strategies (``er-contrastive``, ``mod-x``, ``ctp``) share.

The whole open_clip model (both towers and the logit scale) is trained on each
task's pairs in turn with CLIP's symmetric contrastive loss (Radford et al.
2021, Fig. 3) over the *global* batch (:func:`strategies.imagetext.losses.clip_loss`,
open_clip's ``ClipLoss`` with ``gather_with_grad``), AdamW, linear warm-up and
cosine decay per task, and the logit scale clamped after every step. This is the
"sequential fine-tuning" (SeqF) baseline of Mod-X (Ni et al., ICML 2023) and CTP
(Zhu et al., ICCV 2023): nothing protects earlier tasks.

A step: draw a global batch of images (every rank its strided share,
:func:`cl.runtime.data.loader` with ``shard=True``), one caption per image
(``caption``: random or first), encode both, sum the loss terms
(:meth:`ContrastiveFinetune._terms`, which subclasses extend), average the gradients
over ranks under ``torchrun``, step, clamp ``logit_scale`` to ``[0, ln(logit_scale_max)]``
as Mod-X and open_clip do.

Backbone binding and resume
---------------------------
As :class:`strategies.lora.base.MergedAdapterStrategy`: the strategy trains
``ctx.backbone.model`` in place and keeps the backbone it first sees;
:meth:`state_dict` holds every parameter of the model after the last finished
task, :meth:`load_state_dict` keeps them pending until a backbone is bound, then
writes them and refreshes the backbone fingerprint.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from cl.core.flops import flop_counter
from cl.core.plugin import Plugin
from cl.core.strategy import Context, Strategy, TaskData
from cl.runtime import distributed
from cl.runtime.data import loader
from strategies.imagetext.losses import clip_loss
from strategies.imagetext.options import ContrastiveOptions
from strategies.lora.base import prompts
from streams.core import LabelSpace
from streams.imagetext.dataset import ImageTextDataset

__all__ = ["ContrastiveFinetune", "PairBatches", "full_precision", "lr_factor"]


def lr_factor(step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """Factor of the peak learning rate at optimiser step ``step`` (0-based) of ``total``.

    ``step / W`` while ``step < W`` (linear warm-up from 0), then
    ``r + (1 − r) · ½ (1 + cos(π (step − W) / (T − W)))`` with ``r = min_lr / lr``:
    Mod-X's ``get_cosine_schedule_with_warmup`` (``W = int(0.2 T)``, ``r = 0``) and CTP's
    ``cosine_scheduler`` (``W = 0``, ``r = min_lr / init_lr``) exactly (SGDR, Loshchilov &
    Hutter 2017, Eq. 5, without restarts).
    """
    if step < 0 or total <= 0 or not 0 <= warmup <= total:
        raise ValueError(f"need 0 <= step, 0 <= warmup <= total and total > 0, got step={step}, "
                         f"warmup={warmup}, total={total}.")
    if step < warmup:
        return step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1.0 - min_ratio) * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when autocast made it half precision, else as it is (float64 stays)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class _Indexed(Dataset):
    """Items ``(image tensor, pair index)`` over the concatenation of image-text datasets."""

    def __init__(self, parts: Sequence[ImageTextDataset]) -> None:
        self.parts = list(parts)
        self.starts = [0]
        for part in self.parts:
            self.starts.append(self.starts[-1] + len(part))

    def __len__(self) -> int:
        return self.starts[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """(part, index within it) of pair ``index``."""
        part = next(p for p in range(len(self.parts)) if index < self.starts[p + 1])
        return part, index - self.starts[part]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        part, local = self.locate(index)
        return self.parts[part][local][0], index

    def captions(self, index: int) -> tuple[str, ...]:
        part, local = self.locate(index)
        return self.parts[part].captions[local]


class PairBatches:
    """Endless global batches of a task's pairs: images of this rank's share, one caption each.

    Parameters
    ----------
    parts : sequence of ImageTextDataset
        Transformed datasets trained on together (the task's, then replayed pairs).
    batch_size : int
        Global batch; incomplete batches are dropped.
    caption : {"random", "first"}
    generator : torch.Generator
        Shuffling and caption draws.
    num_workers : int
    """

    def __init__(self, parts: Sequence[ImageTextDataset], *, batch_size: int, caption: str,
                 generator: torch.Generator, num_workers: int) -> None:
        self.pairs = _Indexed(parts)
        world = distributed.world_size()
        if batch_size % world:
            raise ValueError(f"batch_size={batch_size} must be a multiple of the {world} processes "
                             "(every rank takes an equal share of the contrastive batch).")
        if len(self.pairs) < batch_size:
            raise ValueError(f"the task has {len(self.pairs)} image-text pairs, fewer than "
                             f"batch_size={batch_size}; lower batch_size.")
        self.batch_size, self.caption, self.generator = batch_size, caption, generator
        self.num_workers = num_workers
        self.counts = torch.tensor([len(c) for part in self.pairs.parts for c in part.captions])

    @property
    def steps_per_epoch(self) -> int:
        return len(self.pairs) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[str]]]:
        while True:
            # one caption per pair and epoch, drawn before the epoch's batches, so that every
            # rank draws the same numbers whatever share of the batch it loads
            if self.caption == "first":
                chosen = torch.zeros(len(self.counts), dtype=torch.long)
            else:
                chosen = (torch.rand(len(self.counts), generator=self.generator) * self.counts).long()
            for images, index in loader(self.pairs, batch_size=self.batch_size, shuffle=True,
                                        generator=self.generator, num_workers=self.num_workers,
                                        drop_last=True, shard=True):
                yield images, [self.pairs.captions(int(i))[int(chosen[i])] for i in index]


class ContrastiveFinetune(Strategy):
    """Sequential CLIP contrastive fine-tuning of the whole open_clip model, task after task.

    Parameters
    ----------
    options : ContrastiveOptions, optional
        Hyper-parameters (defaults: :class:`~strategies.imagetext.options.ContrastiveOptions`).
    **overrides
        Fields of the options to change (``lr=1e-4, iterations=10``); these are the
        strategy's config options.
    """

    inputs = "images"
    needs_text = True
    label: ClassVar[str] = "contrastive-ft"
    options_class: ClassVar[type] = ContrastiveOptions
    counts_flops = True  # step 0 counted in _fit

    def __init__(self, options: ContrastiveOptions | None = None, /, **overrides: Any) -> None:
        self.options = replace(options if options is not None else self.options_class(), **overrides)
        self._backbone: Any = None
        self._pending: dict[str, torch.Tensor] | None = None
        self._tasks_trained = 0
        self._trainable = 0
        self._text_cache: dict[LabelSpace, torch.Tensor] = {}

    # -- backbone binding ----------------------------------------------------------------
    def attach(self, backbone: Any) -> Any:
        """Bind the open_clip backbone to train; write weights from :meth:`load_state_dict`.

        Raises
        ------
        ValueError
            Not an open_clip backbone with a text tower, or pending weights that do not fit.
        """
        if backbone is self._backbone and self._pending is None:
            return backbone
        model = getattr(backbone, "model", None)
        if not isinstance(model, nn.Module) or not hasattr(backbone, "tokenizer") \
                or not getattr(backbone, "has_text", False):
            name = getattr(backbone, "name", type(backbone).__name__)
            raise ValueError(f"{self.label} trains an open_clip model with a text tower, but backbone "
                             f"{name!r} has none; use e.g. 'ViT-B-32:openai' or 'cl-tiny-vit'.")
        self._backbone = backbone
        if self._pending is not None:
            params = dict(model.named_parameters())
            bad = [k for k, v in self._pending.items() if k not in params or params[k].shape != v.shape]
            if bad:
                raise ValueError(f"{self.label} state does not fit backbone {backbone.name!r}: "
                                 f"{bad[:3]} missing or of another shape; resume with the run's "
                                 "own backbone.")
            with torch.no_grad():
                for key, value in self._pending.items():
                    params[key].copy_(value)
            self._pending = None
            self._weights_changed()
        return backbone

    def _weights_changed(self) -> None:
        self._text_cache.clear()
        self._backbone.refresh_fingerprint()

    # -- subclass hooks --------------------------------------------------------------------
    def _begin_task(self, model: nn.Module, ctx: Context) -> None:
        """Called before the first step of a trained task (frozen copies, queues)."""

    def _parts(self, data: TaskData, ctx: Context) -> list[ImageTextDataset]:
        """The datasets trained on in this task (replay adds stored pairs)."""
        return [data.dataset]

    def _terms(self, model: nn.Module, images: torch.Tensor, tokens: torch.Tensor,
               image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms of one step, summed: CLIP's contrastive loss over the global batch.

        ``images``, ``tokens``: this rank's batch; ``image``, ``text``: the model's
        normalised features (B, D) of it; ``scale``: ``logit_scale.exp()``.
        """
        loss = clip_loss(rank=distributed.rank(), world_size=distributed.world_size())
        return {"contrastive": loss(image, text, scale)}

    def _end_task(self, ctx: Context) -> None:
        """Called after the last step of a trained task (drop frozen copies, fill memories)."""

    # -- the protocol -------------------------------------------------------------------------
    def before_task(self, ctx: Context) -> None:
        self.attach(ctx.backbone)
        batch_plugins = [type(p).__name__ for p in ctx.plugins
                         if type(p).before_batch is not Plugin.before_batch]
        if batch_plugins:
            raise ValueError(f"{self.label} trains on image-text pairs; plugins {batch_plugins} change "
                             "batches of class labels and do not apply (use er-contrastive for "
                             "replay).")

    def train_task(self, data: TaskData, ctx: Context) -> None:
        """Train on task ``ctx.task_index``'s pairs (nothing for an evaluation-only task)."""
        model = self.attach(ctx.backbone).model
        if data.dataset is None and len(data.targets) == 0:
            ctx.record("trained", False)
            return
        if not isinstance(data.dataset, ImageTextDataset):  # a wrong stream: a user error
            raise ValueError(  # noqa: TRY004
                f"{self.label} trains on image-text pairs, but task {ctx.task.name!r} "
                f"of stream {ctx.stream.name!r} is not an image-text task; use an "
                "image-text stream (cl list streams).")
        o = self.options
        parts = self._parts(data, ctx)
        batch_size = self._batch_size(sum(len(p) for p in parts), ctx)
        batches = PairBatches(parts, batch_size=batch_size, caption=o.caption,
                              generator=ctx.generator, num_workers=ctx.num_workers)
        total = o.iterations or max(1, math.ceil(o.epochs * batches.steps_per_epoch))
        self._begin_task(model, ctx)
        try:
            self._fit(model, iter(batches), total, ctx)
        finally:
            model.eval().requires_grad_(False)
            self._weights_changed()
        self._end_task(ctx)
        self._tasks_trained += 1
        ctx.record("iterations", total)
        ctx.record("logit_scale", float(model.logit_scale.exp()))

    def _batch_size(self, n_pairs: int, ctx: Context) -> int:
        """``batch_size``, or for a task with fewer pairs the largest batch the task fills (a
        multiple of the processes that divides CTP's ``queue_size``), with a warning and the
        effective size recorded (``batch_size`` in the task's records): the papers' batches
        (256 to 512) exceed a small task, and the strategy should still run with its defaults
        on the toy world."""
        wanted = self.options.batch_size
        if n_pairs >= wanted:
            return wanted
        world = distributed.world_size()
        queue = getattr(self.options, "queue_size", None)  # CTP: a batch divides its queue
        clamped = next((b for b in range(n_pairs, 1, -1)
                        if b % world == 0 and (queue is None or queue % b == 0)), None)
        if clamped is None:
            return wanted  # PairBatches names the problem
        warnings.warn(f"{self.label}: task {ctx.task.name!r} has {n_pairs} image-text pairs, "
                      f"fewer than batch_size={wanted}; this task trains with batch_size="
                      f"{clamped} (recorded as 'batch_size' in its records). Set "
                      "strategy.batch_size to choose it.", UserWarning, stacklevel=2)
        ctx.record("batch_size", clamped)
        return clamped

    def _fit(self, model: nn.Module, batches: Iterator[tuple[torch.Tensor, list[str]]], total: int,
             ctx: Context) -> None:
        o = self.options
        device = next(model.parameters()).device
        params = [p for p in model.parameters()]
        for p in params:
            p.requires_grad_(True)
        self._trainable = sum(p.numel() for p in params)
        opt = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
        warmup, min_ratio = int(o.warmup * total), o.min_lr / o.lr
        autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                  enabled=o.amp and device.type == "cuda")
        tokenizer = self._backbone.tokenizer
        max_log_scale = math.log(o.logit_scale_max)
        model.train()
        for i in tqdm(range(total), desc=f"{self.label} {ctx.task.name}", leave=False,
                      disable=not ctx.progress):
            for group in opt.param_groups:
                group["lr"] = o.lr * lr_factor(i, total, warmup, min_ratio)
            counting = flop_counter() if i == 0 else nullcontext()
            with counting:
                x, captions = next(batches)
                x, tokens = x.to(device), tokenizer(captions).to(device)
                with autocast:
                    image = model.encode_image(x, normalize=True)
                    text = model.encode_text(tokens, normalize=True)
                    scale = model.logit_scale.exp()
                    terms = self._terms(model, x, tokens, full_precision(image),
                                        full_precision(text), full_precision(scale))
                loss = sum(terms.values())
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{self.label} loss became {loss.item()} at step {i} of task "
                        f"{ctx.task.name!r}; lower lr (now {o.lr}), e.g. --set strategy.lr={o.lr / 10:g}.")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                self._average_gradients(params)
            if i == 0:
                ctx.count("train_flops", counting.get_total_flops() * total)
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, max_log_scale)
            ctx.count("examples_seen", len(x) * distributed.world_size())
            ctx.after_batch(loss.detach())
        if not all(torch.isfinite(p).all() for p in params):
            raise FloatingPointError(f"{self.label} weights became non-finite in task "
                                     f"{ctx.task.name!r}; lower lr (now {o.lr}).")

    @staticmethod
    def _average_gradients(params: list[torch.Tensor]) -> None:
        """Average gradients over ranks (open_clip's convention with ``local_loss`` and
        ``gather_with_grad``: each rank's loss covers its rows against the global batch, so
        the rank average is the gradient of the global contrastive loss)."""
        world = distributed.world_size()
        if world == 1:
            return
        distributed.all_reduce_gradients(params)
        for p in params:
            if p.grad is not None:
                p.grad.div_(world)

    @staticmethod
    def frozen_copy(model: nn.Module) -> nn.Module:
        """A copy of ``model`` in eval mode that never requires gradients."""
        return copy.deepcopy(model).eval().requires_grad_(False)

    # -- embeddings and predictions -------------------------------------------------------------
    def embed_images(self, images: torch.Tensor, ctx: Context) -> torch.Tensor:
        """Normalised image embeddings of the current model, (N, 3, H, W) → (N, D)."""
        model = self.attach(ctx.backbone).model
        with torch.no_grad():
            return model.encode_image(images.to(next(model.parameters()).device), normalize=True)

    def embed_texts(self, texts: list[str], ctx: Context) -> torch.Tensor:
        """Normalised text embeddings of the current model, M strings → (M, D)."""
        model = self.attach(ctx.backbone).model
        tokens = self._backbone.tokenizer(list(texts)).to(next(model.parameters()).device)
        with torch.no_grad():
            return model.encode_text(tokens, normalize=True)

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        """Zero-shot CLIP logits ``s · î·t̂ᵀ`` (N, C) of the current model over the first-template
        prompts of ``label_space`` (the model scored on a classification stream)."""
        model = self.attach(ctx.backbone).model
        text = self._text_cache.get(label_space)
        if text is None:
            text = self._text_cache[label_space] = self.embed_texts(prompts(label_space), ctx).float()
        image = self.embed_images(inputs, ctx).float()
        return (model.logit_scale.exp().detach().float() * image @ text.T).cpu()

    # -- reporting and resume -------------------------------------------------------------------
    def trainable_parameters(self) -> int:
        return self._trainable

    def state_dict(self) -> dict[str, Any]:
        if self._tasks_trained == 0 and self._pending is None:
            return {}
        weights = self._pending
        if weights is None:
            weights = {k: v.detach().cpu().clone()
                       for k, v in self._backbone.model.named_parameters()}
        return {"weights": weights, "tasks_trained": self._tasks_trained,
                "trainable_parameters": self._trainable}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            self._pending, self._tasks_trained, self._trainable = None, 0, 0
            self._text_cache.clear()
            return
        self._pending = {k: torch.as_tensor(v) for k, v in state["weights"].items()}
        self._tasks_trained = int(state["tasks_trained"])
        self._trainable = int(state["trainable_parameters"])
        if self._backbone is not None:
            self.attach(self._backbone)
