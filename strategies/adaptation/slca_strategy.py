"""``slca``: Slow Learner with Classifier Alignment (Zhang et al., ICCV 2023; ``GengDavid/SLCA`` @ 169d4e6).

Per task (reference ``models/slca.py``):

1. **Slow learner** (l. 107–170): the image tower and a linear head with one layer per
   task train together by SGD (momentum 0.9, weight decay 5e−4), the tower at
   ``backbone_lr_scale`` (1/100) of the head's rate, ×0.1 at the milestones; the loss
   covers the current task's logits only (:mod:`strategies.adaptation.slca`).
2. **Class statistics** (``_compute_class_mean``): mean and covariance (``torch.cov``,
   float64) of the features of every class of the task, training split without
   augmentation, through the trained tower.
3. **Classifier alignment** (``_stage2_compact_classifier``): the whole head is retrained
   on Gaussian pseudo-features of every class seen so far
   (:func:`strategies.estimators.alignment.align_classifier`, shared with the analytic
   heads); the aligned head serves evaluation, and the next task trains on from the head
   *before* alignment (the reference's ``fc.backup()`` / ``fc.recall()``).

Adaptation to CLIP, on purpose: the features are the L2-normalised CLIP image embeddings
(the reference: a ViT's pre-logits), so that ``head_init = "text"`` (a new task's layer
starts as ``s · t̂`` of its class prompts) starts from exactly CLIP's zero-shot logits;
classes of the label space without a layer yet (tasks not trained, in MTIL and X-TAIL
evaluations) are scored by CLIP's text classifier ``s · î·t̂ᵀ`` with the current tower.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from cl.core.strategy import Context, TaskData
from cl.runtime.data import loader
from strategies.adaptation.base import AdaptingStrategy
from strategies.adaptation.clip_objective import prompts
from strategies.adaptation.options import SLCAOptions
from strategies.adaptation.slca import (
    ContinualLinearHead,
    current_task_loss,
    multistep_factor,
    slow_learner_param_groups,
)
from streams.core import LabelSpace


def class_gaussians(features: torch.Tensor, labels: torch.Tensor, classes: list[int],
                    task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (C, D) and covariance (C, D, D) of each class's features, in float64.

    The covariance is ``torch.cov`` (unbiased), as the reference's ``_compute_class_mean``;
    a class with a single training feature has none (``torch.cov`` gives NaN), so its
    covariance is 0 and its pseudo-features are its mean plus the alignment's jitter.
    Raises ``ValueError`` naming a class with no training feature.
    """
    means, covs = [], []
    for c in classes:
        x = features[labels == c].double()
        if len(x) == 0:
            raise ValueError(f"slca: class {c} of task {task!r} has no training image; its "
                             "Gaussian for classifier alignment cannot be estimated.")
        means.append(x.mean(0))
        covs.append(torch.cov(x.T) if len(x) > 1 else x.new_zeros(x.shape[1], x.shape[1]))
    return torch.stack(means), torch.stack(covs)


class SLCA(AdaptingStrategy):
    """SLCA on open_clip: slow-learning image tower, per-task linear head, classifier alignment.

    Parameters
    ----------
    options : SLCAOptions, optional
        Hyper-parameters (defaults: ``exps/slca/slca_cifar.json``: lr 0.01, tower at 1/100,
        batch 128; alignment 5 epochs × 256 pseudo-features per class, logit norm 0.1).
    **overrides
        Fields of the options to change; these are the strategy's config options.
    """

    label = "slca"
    exportable = False
    options_class = SLCAOptions
    options: SLCAOptions

    def __init__(self, options: SLCAOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(replace(options or SLCAOptions(), **overrides))
        self._reset()

    def _reset(self) -> None:
        self._head: ContinualLinearHead | None = None
        self._classes: list[int] = []  # global class id of every head row
        self._class_task: list[int] = []
        self._means: torch.Tensor | None = None  # (C, D) float64
        self._covariances: torch.Tensor | None = None  # (C, D, D) float64
        self._aligned: tuple[torch.Tensor, torch.Tensor] | None = None
        self._known = 0

    def check_run(self, backbone: Any, stream: Any) -> dict[str, Any]:
        """SLCA grows one head layer per task of new classes; a domain-incremental stream
        repeats its classes in every task, so it is refused before the run."""
        if getattr(stream, "scenario", None) == "domain-incremental":
            raise ValueError(
                f"slca adds a head layer for each task's new classes, and stream "
                f"{stream.name!r} is domain-incremental (every task has the same classes); use "
                "a class- or task-incremental stream, or clip-finetune for domain-incremental "
                "sessions.")
        return {}

    # -- head ------------------------------------------------------------------------------------
    def _begin_task(self, model: nn.Module, ctx: Context) -> None:
        device = next(model.parameters()).device
        if self._head is None:
            self._head = ContinualLinearHead(int(model.visual.output_dim)).to(device)
        first = ctx.stream.class_offsets[ctx.task_index]
        space = ctx.stream.task_label_space([ctx.task_index])
        if first in self._classes:
            raise RuntimeError(f"slca: task {ctx.task.name!r} already has a head layer.")
        self._known = len(self._classes)
        layer = self._head.add_task(len(space), ctx.generator)
        if self.options.head_init == "text":
            with torch.no_grad():
                layer.weight.copy_(model.logit_scale.exp() * self._text(model, space))
        self._classes += list(space.class_ids)
        self._class_task += [ctx.task_index] * len(space)

    def _text(self, model: nn.Module, space: LabelSpace) -> torch.Tensor:
        device = next(model.parameters()).device
        with torch.no_grad(), self.autocast(device):
            tokens = self._backbone.tokenizer(prompts(space)).to(device)
            return model.encode_text(tokens, normalize=True).float()

    def _param_groups(self, model: nn.Module, ctx: Context) -> list[dict[str, Any]]:
        if self._head is None or len(self._classes) == self._known:
            raise RuntimeError("slca: call before_task before train_task (no head for the task).")
        return slow_learner_param_groups(
            model.visual.parameters(), self._head.parameters(), lr=self.options.lr,
            backbone_lr_scale=self.options.backbone_lr_scale,
            weight_decay=self.options.weight_decay)

    def _optimizer(self, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(groups, lr=lr, momentum=self.options.momentum,
                               weight_decay=self.options.weight_decay)

    def _lr_factor(self, step: int, total: int) -> float:
        return multistep_factor(step, self.options.milestones)

    def _fit(self, model: nn.Module, groups: list[dict[str, Any]], data: TaskData,
             ctx: Context) -> None:
        self._head.train()  # type: ignore[union-attr]
        try:
            super()._fit(model, groups, data, ctx)
        finally:
            self._head.eval()  # type: ignore[union-attr]

    def _task_loss(self, model: nn.Module, image: torch.Tensor, text: torch.Tensor,
                   target: torch.Tensor) -> torch.Tensor:
        # target: positions in the training label space -> rows of the head
        ids = torch.as_tensor(self.training_space.space.class_ids)[target.cpu()]
        rows = torch.as_tensor(self._rows(ids.tolist()), device=target.device)
        return current_task_loss(self._head(image.float()), rows, self._known)  # type: ignore[misc]

    def _rows(self, ids: list[int]) -> list[int]:
        where = {c: i for i, c in enumerate(self._classes)}
        return [where.get(c, -1) for c in ids]  # -1 (a replayed class without a row): ignored

    # -- after the task: statistics and alignment ------------------------------------------------
    def _end_task(self, model: nn.Module, data: TaskData | None, ctx: Context) -> None:
        if data is None or data.dataset is None:
            raise RuntimeError("slca: after_task needs the task's images (train_task).")
        features, labels = self._features(model, data, ctx)
        new = self._classes[self._known:]
        means, covs = class_gaussians(features, labels, new, ctx.task.name)
        self._means = means if self._means is None else torch.cat([self._means, means])
        self._covariances = covs if self._covariances is None else torch.cat([self._covariances,
                                                                              covs])
        self._aligned = None
        if self.options.ca_epochs:
            from strategies.estimators.alignment import align_classifier

            weight, bias = self._head_weights()
            self._aligned = align_classifier(
                weight.cpu(), bias.cpu(), self._means.float(), self._covariances.float(),
                torch.tensor(self._class_task), generator=ctx.generator,
                epochs=self.options.ca_epochs, samples_per_class=self.options.ca_samples_per_class,
                logit_norm=self.options.ca_logit_norm)
        ctx.record("aligned_classes", len(self._classes) if self._aligned is not None else 0)

    def _features(self, model: nn.Module, data: TaskData, ctx: Context
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised image embeddings (N, D) and global labels (N,) of the task's images."""
        device = next(model.parameters()).device
        parts, labels = [], []
        with torch.no_grad():
            for x, y in loader(data.dataset, batch_size=ctx.batch_size,  # type: ignore[arg-type]
                               num_workers=ctx.num_workers):
                with self.autocast(device):
                    parts.append(model.encode_image(x.to(device), normalize=True).float().cpu())
                labels.append(torch.as_tensor(y))
        return torch.cat(parts), torch.cat(labels)

    def _head_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The head as trained (before alignment): weights (C, D) and biases (C,)."""
        if self._head is None:
            raise RuntimeError("slca has no head yet; train a task first.")
        return (torch.cat([h.weight.detach() for h in self._head.heads]),
                torch.cat([h.bias.detach() for h in self._head.heads]))

    def head_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The head that scores: aligned rows where alignment ran, trained rows after them
        (a layer added by ``before_task`` and not aligned yet); (C, D) and (C,)."""
        weight, bias = self._head_weights()
        if self._aligned is not None:
            n = len(self._aligned[1])
            weight = torch.cat([self._aligned[0].to(weight), weight[n:]])
            bias = torch.cat([self._aligned[1].to(bias), bias[n:]])
        return weight, bias

    # -- prediction ------------------------------------------------------------------------------
    def _logits(self, model: nn.Module, images: torch.Tensor, label_space: LabelSpace
                ) -> torch.Tensor:
        with self.autocast(images.device):
            image = model.encode_image(images, normalize=True)
        image = image.float()
        rows = torch.as_tensor(self._rows(list(label_space.class_ids)))
        headed = rows >= 0
        logits = torch.empty((len(images), len(label_space)), device=images.device)
        if headed.any():
            weight, bias = self.head_weights()
            weight, bias = weight.to(images.device), bias.to(images.device)
            pick = rows[headed].to(images.device)
            logits[:, headed.to(images.device)] = image @ weight[pick].T + bias[pick]
        if not headed.all():
            others = [i for i, h in enumerate(headed.tolist()) if not h]
            sub = LabelSpace(*(tuple(getattr(label_space, f)[i] for i in others)
                               for f in ("class_ids", "class_names", "templates")))
            logits[:, torch.as_tensor(others, device=images.device)] = self.clip_logits(
                model, image, sub)
        return logits

    # -- state -----------------------------------------------------------------------------------
    def _state(self, model: nn.Module) -> dict[str, Any]:
        weight, bias = self._head_weights()
        state: dict[str, Any] = {
            "weights": {k: p.detach().cpu().clone() for k, p in model.visual.named_parameters(
                prefix="visual")},
            "head_weight": weight.cpu().clone(), "head_bias": bias.cpu().clone(),
            "classes": list(self._classes), "class_task": list(self._class_task),
            "means": self._means, "covariances": self._covariances,
        }
        if self._aligned is not None:
            state["aligned_weight"], state["aligned_bias"] = (t.cpu().clone() for t in self._aligned)
        return state

    def _restore(self, model: nn.Module, state: dict[str, Any]) -> None:
        self.write_parameters(model, state["weights"])
        device = next(model.parameters()).device
        self._classes = [int(c) for c in state["classes"]]
        self._class_task = [int(t) for t in state["class_task"]]
        self._head = ContinualLinearHead(int(model.visual.output_dim)).to(device)
        weight, bias = torch.as_tensor(state["head_weight"]), torch.as_tensor(state["head_bias"])
        start = 0
        for task in dict.fromkeys(self._class_task):
            n = self._class_task.count(task)
            layer = self._head.add_task(n, torch.Generator())
            with torch.no_grad():
                layer.weight.copy_(weight[start:start + n])
                layer.bias.copy_(bias[start:start + n])
            start += n
        self._head.requires_grad_(False)
        self._head.eval()
        self._means = torch.as_tensor(state["means"])
        self._covariances = torch.as_tensor(state["covariances"])
        self._aligned = ((torch.as_tensor(state["aligned_weight"]),
                          torch.as_tensor(state["aligned_bias"]))
                         if "aligned_weight" in state else None)
        self._known = len(self._classes)

    def memory_bytes(self) -> int:
        """Head (before and after alignment) and class statistics, in bytes."""
        tensors = [*(self._head.parameters() if self._head is not None else ()),
                   *(self._aligned or ()), *(t for t in (self._means, self._covariances)
                                             if t is not None)]
        return sum(t.numel() * t.element_size() for t in tensors)


__all__ = ["SLCA"]
