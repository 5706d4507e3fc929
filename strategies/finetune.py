"""``finetune``: a small MLP trained with SGD on each task in turn, no replay.

The lower bound of continual learning: it shows catastrophic forgetting
(McCloskey & Cohen 1989; the "fine-tuning" baseline of every CL survey).
It trains on cached features, with one output per global class of the stream;
each task's loss covers the classes of the training label space (plus the
classes of replayed examples, when a replay plugin is attached).

Compute: ``train_flops`` counts the MLP's forward and backward passes with
``cl.core.flops.flop_counter`` on the task's first minibatch,
scaled by the examples seen (the MLP's FLOPs are linear in the batch size).
For the NEVIS'22 protocol (:mod:`cl.core.selection`) the learning rate and the
label smoothing are searchable, over the reference's ranges.

``head="language"`` replaces the last linear layer by LingoCL's language-guided head
(Ni et al., CVPR 2024; :mod:`cl.models.language_head`): frozen targets encoded from every
class name of the stream by ``language_encoder`` (``"clip"``: the backbone's text tower),
a trainable projection and cosine logits at temperature ``head_temperature``. The targets are
built once, before the first task, and never change.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any, ClassVar

import torch
from torch import nn

from cl.core.flops import flop_counter
from cl.core.strategy import Context, Strategy, TaskData
from cl.models.language_head import check_head, classifier, stream_targets
from streams.core import LabelSpace


def _columns(space: list[int], targets: torch.Tensor) -> torch.Tensor:
    """Sorted global ids the loss covers: the training label space plus any class in the
    batch outside it (examples replayed by a plugin from earlier tasks of a
    task-incremental stream)."""
    return torch.tensor(sorted(set(space) | set(targets.tolist())))


class Finetune(Strategy):
    """MLP head fine-tuned task after task with plain SGD (no replay, no regularisation).

    Parameters
    ----------
    hidden : int
        Width of the hidden layer (0 for a linear head).
    epochs : int
        Passes over each task's training features.
    lr : float
        SGD learning rate.
    momentum : float
        SGD momentum.
    batch_size : int
        Minibatch size.
    label_smoothing : float
        Label smoothing of the cross-entropy, in [0, 1) (Szegedy et al. 2016, §7).
    head : {"linear", "language"}
        One-hot linear output layer, or LingoCL's frozen language-guided head.
    language_encoder : str
        With ``head="language"``: ``"clip"`` (the backbone's text tower) or a
        ``transformers`` model name / local directory.
    head_temperature : float
        τ of the language-guided head's cosine logits (> 0).
    """

    inputs = "features"
    counts_flops = True  # the first minibatch, counted in train_task
    searchable: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "lr": ("log-uniform", 1e-4, 1e-1), "label_smoothing": ("uniform", 0.0, 0.3)}

    def __init__(
        self,
        *,
        hidden: int = 128,
        epochs: int = 20,
        lr: float = 0.05,
        momentum: float = 0.9,
        batch_size: int = 32,
        label_smoothing: float = 0.0,
        head: str = "linear",
        language_encoder: str = "clip",
        head_temperature: float = 0.1,
    ) -> None:
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if value <= 0:
                raise ValueError(f"finetune {name} must be positive, got {value}.")
        if hidden < 0:
            raise ValueError(f"finetune hidden must be >= 0, got {hidden}.")
        if lr <= 0:
            raise ValueError(f"finetune lr must be positive, got {lr}.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"finetune label_smoothing must be in [0, 1), got {label_smoothing}.")
        self.hidden, self.epochs, self.lr = hidden, epochs, lr
        self.momentum, self.batch_size = momentum, batch_size
        self.label_smoothing = label_smoothing
        check_head(head, "finetune")
        if not head_temperature > 0:
            raise ValueError(f"finetune head_temperature must be positive, got {head_temperature}.")
        self.head, self.language_encoder = head, language_encoder
        self.head_temperature = head_temperature
        self.model: nn.Module | None = None
        self._dims: tuple[int, int] | None = None
        self._targets: torch.Tensor | None = None

    def _build(self, dim: int, n_out: int, generator: torch.Generator) -> nn.Module:
        """The MLP, initialised from ``generator``; torch's global RNG is left untouched."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            return classifier(dim, n_out, self.hidden, targets=self._targets,
                              temperature=self.head_temperature)


    def train_task(self, data: TaskData, ctx: Context) -> None:
        x, y = data.features.float(), data.targets
        if self.model is None:
            self._dims = (x.shape[1], ctx.stream.n_classes)
            if self.head == "language":
                self._targets = stream_targets(ctx.stream, self.language_encoder, ctx.backbone)
            self.model = self._build(*self._dims, ctx.generator)
        self.model.to(ctx.device).train()
        space = list(ctx.label_space.class_ids)
        opt = torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=self.momentum)
        flops_per_example, seen = None, 0
        for _ in range(self.epochs):
            order = torch.randperm(len(x), generator=ctx.generator)
            for start in range(0, len(x), self.batch_size):
                idx = order[start : start + self.batch_size]
                xb, yb = ctx.before_batch(x[idx], y[idx])
                counter = flop_counter() if flops_per_example is None else None
                with counter if counter is not None else nullcontext():
                    cols = _columns(space, yb)
                    tb = torch.searchsorted(cols, yb).to(ctx.device)
                    loss = nn.functional.cross_entropy(self.model(xb.to(ctx.device))[:, cols], tb,
                                                       label_smoothing=self.label_smoothing)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"finetune loss became {loss.item()} on task {ctx.task.name!r}; lower "
                            f"lr (now {self.lr})."
                        )
                    opt.zero_grad()
                    loss.backward()
                if counter is not None:
                    flops_per_example = counter.get_total_flops() / len(xb)
                opt.step()
                ctx.after_batch(loss.detach())
                ctx.count("examples_seen", len(xb))
                seen += len(xb)
        ctx.count("train_flops", (flops_per_example or 0.0) * seen)
        self.model.eval()

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        if self.model is None:
            return torch.zeros(inputs.shape[0], len(label_space))
        with torch.no_grad():
            logits = self.model(inputs.float().to(ctx.device))
        return logits[:, list(label_space.class_ids)].cpu()

    def trainable_parameters(self) -> int:
        return 0 if self.model is None else sum(p.numel() for p in self.model.parameters())

    def memory_bytes(self) -> int:
        if self.model is None:
            return 0
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def state_dict(self) -> dict[str, Any]:
        if self.model is None:
            return {}
        state = {"model": self.model.state_dict(), "dims": list(self._dims)}
        if self._targets is not None:
            state["targets"] = self._targets.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            self.model, self._targets = None, None
            return
        self._dims = (int(state["dims"][0]), int(state["dims"][1]))
        self._targets = state.get("targets")
        self.model = self._build(*self._dims, torch.Generator().manual_seed(0))
        self.model.load_state_dict(state["model"])
        self.model.eval()
