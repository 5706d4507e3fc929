"""Pieces shared by the CLIP class-incremental methods (``proof``, ``rapf``, ``engine``, ``clap4clip``).

All four train small modules on top of the *frozen* CLIP image and text towers,
so here they are feature strategies: they train on the run's feature cache
(L2-normalised image embeddings, (N, D)) and embed class names with the run's
text tower (:func:`cl.models.prompts.zero_shot_head`). What every method's
reference does on raw images and cannot be reproduced on a cache is named in
its module docstring and in ``docs/cil.md``.

Memory accounting (the same for all four, see ``docs/cil.md``):

- :meth:`CILStrategy.memory_bytes` is what is carried to the next task: every
  learned tensor (adapters, projections, prompts), every statistic (means,
  covariances, prototypes) and every exemplar *feature* kept;
- the number of exemplars kept after each task is recorded with
  ``ctx.record("exemplars", n)`` (0 for the statistics-keeping methods), so
  ``results.json`` holds it per task beside ``compute.memory_bytes``; the
  exemplar memory of the papers stores images, whose cost is
  ``exemplars × image bytes`` (:mod:`cl.reporting.memory`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F

from cl.core.strategy import Context, Strategy, TaskData
from streams.core import LabelSpace


def text_embeddings(ctx: Context, names: Sequence[str],
                    templates: Sequence[str] | Sequence[Sequence[str]]) -> torch.Tensor:
    """Template-averaged, unit-norm CLIP text embeddings (C, D) of ``names`` (CPU, float32)."""
    from cl.models.prompts import zero_shot_head  # lazy: text side only

    if not getattr(ctx.backbone, "has_text", False):
        raise ValueError(
            f"this strategy embeds class names with CLIP's text tower, but backbone "
            f"{ctx.backbone.name!r} has none; use a VLM backbone such as 'ViT-B-16:openai' "
            "or 'toy-clip'.")
    return zero_shot_head(ctx.backbone, list(names), templates).float().cpu()


def embed_texts(ctx: Context, texts: Sequence[str]) -> torch.Tensor:
    """Unit-norm CLIP embeddings (N, D) of free texts (each used verbatim as its own prompt)."""
    return text_embeddings(ctx, texts, ["{}"])


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches of a random permutation of ``range(n)`` (one epoch, last batch kept)."""
    order = torch.randperm(n, generator=generator)
    yield from order.split(batch_size)


def herding(features: torch.Tensor, m: int) -> torch.Tensor:
    """iCaRL herding (Rebuffi et al. 2017, Alg. 4): indices of ``m`` exemplars of one class.

    Greedily picks the sample whose addition keeps the running exemplar mean
    closest to the class mean of the L2-normalised ``features`` (n, D); the
    order of the result is the selection order, so ``[:m']`` is the herding
    set of size ``m'`` (what PyCIL's ``_reduce_exemplar`` keeps).
    """
    v = F.normalize(features.double(), dim=1)
    mean = v.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mean)
    available = torch.ones(len(v), dtype=torch.bool)
    for k in range(1, min(m, len(v)) + 1):
        dist = ((mean - (v + running) / k) ** 2).sum(1).sqrt()
        dist[~available] = float("inf")
        i = int(dist.argmin())
        chosen.append(i)
        running += v[i]
        available[i] = False
    return torch.tensor(chosen, dtype=torch.long)


class ExemplarMemory:
    """Exemplar features kept per class, PyCIL-style budget.

    Parameters
    ----------
    memory_size : int
        Total budget when ``memory_per_class`` is None: after each task every
        seen class keeps ``memory_size // seen_classes`` exemplars (PyCIL's
        ``fixed_memory=False``, PROOF's default: 2,000 on CIFAR-100, 20 per class
        after the last task).
    memory_per_class : int or None
        Fixed number per class instead (``fixed_memory=True``).
    selection : {"herding", "random"}
    """

    def __init__(self, memory_size: int, memory_per_class: int | None,
                 selection: Literal["herding", "random"]) -> None:
        if memory_size < 0 or (memory_per_class is not None and memory_per_class < 0):
            raise ValueError(f"memory budgets must be >= 0, got memory_size={memory_size}, "
                             f"memory_per_class={memory_per_class}.")
        if selection not in ("herding", "random"):
            raise ValueError(f"exemplar selection must be 'herding' or 'random', got {selection!r}.")
        self.memory_size, self.memory_per_class, self.selection = (
            int(memory_size), memory_per_class, selection)
        self.features = torch.zeros(0, 0)
        self.targets = torch.zeros(0, dtype=torch.long)

    def per_class(self, seen_classes: int) -> int:
        if self.memory_per_class is not None:
            return int(self.memory_per_class)
        return self.memory_size // max(seen_classes, 1)

    def update(self, x: torch.Tensor, y: torch.Tensor, seen_classes: int,
               generator: torch.Generator) -> None:
        """Shrink old classes to the new quota (keeping selection order), then add ``x``'s classes."""
        m = self.per_class(seen_classes)
        keep_x, keep_y = [], []
        for c in torch.unique(self.targets):
            idx = torch.nonzero(self.targets == c).ravel()[:m]
            keep_x.append(self.features[idx])
            keep_y.append(self.targets[idx])
        for c in torch.unique(y):
            idx = torch.nonzero(y == c).ravel()
            if self.selection == "herding":
                pick = idx[herding(x[idx], m)]
            else:
                pick = idx[torch.randperm(len(idx), generator=generator)[:m]]
            keep_x.append(x[pick].float())
            keep_y.append(y[pick])
        if keep_x:
            self.features = torch.cat(keep_x)
            self.targets = torch.cat(keep_y)

    def __len__(self) -> int:
        return len(self.targets)

    def nbytes(self) -> int:
        return int(self.features.numel() * self.features.element_size()
                   + self.targets.numel() * self.targets.element_size())

    def state_dict(self) -> dict[str, Any]:
        return {"features": self.features, "targets": self.targets}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.features, self.targets = state["features"], state["targets"]


class CILStrategy(Strategy):
    """Base of the four methods: feature inputs, text tower, seen classes, optimiser helpers."""

    inputs = "features"
    needs_text = True

    def _init_common(self, *, epochs: int, batch_size: int, lr: float) -> None:
        name = type(self).__name__
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"{name}: epochs and batch_size must be >= 1, got epochs={epochs}, "
                             f"batch_size={batch_size}.")
        if not lr > 0:
            raise ValueError(f"{name}: lr must be positive, got {lr}.")
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.class_ids: list[int] = []           # seen classes, in learning order
        self.class_names: list[str] = []
        self.class_templates: list[tuple[str, ...]] = []
        self.task_sizes: list[int] = []
        self.trained = 0

    def check_run(self, backbone: Any, stream: Any) -> dict[str, Any]:
        """Refuse, before the run directory is touched, a stream that is not class-incremental."""
        self._check_scenario(stream)
        return {}

    def _check_scenario(self, stream: Any) -> None:
        if stream.scenario != "class-incremental":
            raise ValueError(
                f"{type(self).__name__} is a class-incremental method; stream "
                f"{stream.name!r} is {stream.scenario!r}. Use a class-incremental stream "
                "(split-cifar100, imagenet-r, toy-cil).")

    def _check_features(self, data: TaskData, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        if data.features is None:
            raise ValueError(f"{type(self).__name__} needs cached features; got none for "
                             f"{ctx.task.name!r}.")
        self._check_scenario(ctx.stream)  # also when driven without the runner's check_run
        x = data.features.float()
        if not torch.isfinite(x).all():
            raise ValueError(f"features of task {ctx.task.name!r} contain NaN or inf; clear the "
                             "feature cache or check the backbone.")
        return x, data.targets.long()

    def _add_classes(self, y: torch.Tensor, ctx: Context) -> list[int]:
        """Register the task's classes (global ids, names, templates) in learning order."""
        space = ctx.label_space
        new = [int(c) for c in torch.unique(y).tolist() if int(c) not in self.class_ids]
        pos = space.index_of(new)
        self.class_ids += new
        self.class_names += [space.class_names[p] for p in pos]
        self.class_templates += [tuple(space.templates[p]) for p in pos]
        self.task_sizes.append(len(new))
        return new

    def _local(self, y: torch.Tensor) -> torch.Tensor:
        """Positions of global ids ``y`` among the seen classes (learning order)."""
        lut = {c: i for i, c in enumerate(self.class_ids)}
        return torch.tensor([lut[int(c)] for c in y.tolist()], dtype=torch.long)

    def _scatter(self, scores: torch.Tensor, label_space: LabelSpace) -> torch.Tensor:
        """Logits over ``label_space`` (N, C) from scores over the seen classes; unseen: ``-inf``."""
        out = torch.full((scores.shape[0], len(label_space)), float("-inf"))
        lut = {c: i for i, c in enumerate(self.class_ids)}
        for j, c in enumerate(label_space.class_ids):
            if c in lut:
                out[:, j] = scores[:, lut[c]].float().cpu()
        return out

    def _seen_text(self, ctx: Context, template: str | None = None) -> torch.Tensor:
        templates = [(template,)] * len(self.class_names) if template else self.class_templates
        return text_embeddings(ctx, self.class_names, templates)

    def _template_texts(self, ctx: Context) -> list[torch.Tensor]:
        """Per-template unit-norm text embeddings of the seen classes: T tensors (C, D).

        Template ``k`` of a class with fewer templates wraps around.
        """
        n_templates = max(len(t) for t in self.class_templates)
        return [text_embeddings(ctx, self.class_names,
                                [(t[k % len(t)],) for t in self.class_templates])
                for k in range(n_templates)]

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        """Logits (N, C) over ``label_space``; before any training, zero-shot CLIP."""
        x = F.normalize(inputs.detach().float().cpu(), dim=-1)
        if not self.class_ids:
            head = text_embeddings(ctx, label_space.class_names, label_space.templates)
            return 100.0 * x @ head.T
        with torch.no_grad():
            return self._scatter(self._scores(x, ctx), label_space)

    def _scores(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    def _common_state(self) -> dict[str, Any]:
        return {"class_ids": list(self.class_ids), "class_names": list(self.class_names),
                "class_templates": [list(t) for t in self.class_templates],
                "task_sizes": list(self.task_sizes), "trained": self.trained}

    def _load_common(self, state: dict[str, Any]) -> None:
        self.class_ids = [int(c) for c in state["class_ids"]]
        self.class_names = list(state["class_names"])
        self.class_templates = [tuple(t) for t in state["class_templates"]]
        self.task_sizes = [int(s) for s in state["task_sizes"]]
        self.trained = int(state["trained"])


def tensor_bytes(*tensors: torch.Tensor) -> int:
    """Bytes of the given tensors."""
    return int(sum(t.numel() * t.element_size() for t in tensors))


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return tensor_bytes(*module.parameters(), *module.buffers())


def clip_contrastive_loss(image: torch.Tensor, text: torch.Tensor,
                          logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al. 2021, Fig. 3) over a batch of pairs (B, D), (B, D).

    ``(CE(s·I·Tᵀ, arange) + CE(s·T·Iᵀ, arange)) / 2``, as open_clip's ``ClipLoss``
    on one process (the form PROOF and ENGINE use).
    """
    logits = logit_scale * image @ text.T
    labels = torch.arange(len(image))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
