"""``zero-shot-retention``: how much zero-shot ability the backbone keeps while it is adapted.

After every task the plugin scores the run's *current* backbone, zero-shot, on
held-out tasks that are never trained (for example another stream's tasks),
and records the accuracies under ``zero_shot_retention`` in ``results.json``.
This is the "knowledge retention" view of ZSCL (Zheng et al. 2023,
"Preventing Zero-Shot Transfer Degradation in Continual Learning of
Vision-Language Models", ICCV, Sec. 4.1: zero-shot accuracy on held-out
datasets after continual training) and of CoDyRA (Lu et al. 2025); a frozen
backbone keeps it constant, adapting strategies (LoRA) can lower it.

Each held-out image is encoded by ``ctx.backbone`` (never the feature cache:
adapters change the features), L2-normalised and scored against the
zero-shot head of the task's own classes (:func:`cl.models.prompts.zero_shot_head`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Subset

from cl.core.plugin import Plugin
from cl.runtime.data import Preprocessed, loader
from streams.core import Task

if TYPE_CHECKING:
    from cl.core.strategy import Context
    from cl.models.backbones import Backbone


def zero_shot_accuracy(
    backbone: Backbone, task: Task, *, batch_size: int = 256, max_examples: int | None = None,
    device: torch.device | str = "cpu",
) -> float:
    """Top-1 zero-shot accuracy of ``backbone`` on ``task``'s test split over its own classes.

    Parameters
    ----------
    backbone : Backbone
        Must have a text tower.
    task : Task
    max_examples : int or None
        Score only the first ``max_examples`` test images (``None``: all).

    Returns
    -------
    float
        Fraction of correctly classified test images.
    """
    from cl.models.prompts import zero_shot_head  # lazy: the text side is optional

    data = task.load_test()
    if max_examples is not None:
        data = Subset(data, range(min(max_examples, len(data))))
    if len(data) == 0:
        raise ValueError(f"held-out task {task.name!r} has an empty test split.")
    # no head cache: an adapted text tower may not have changed the backbone's fingerprint
    head = zero_shot_head(backbone, list(task.class_names), list(task.templates), cache=False)
    head = head.float().to(device)
    correct = 0
    with torch.inference_mode():
        for images, labels in loader(Preprocessed(data, backbone.preprocess, 0, task.n_classes),
                                     batch_size=batch_size):
            feats = backbone.encode_images(images.to(device)).float()
            feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            correct += int(((feats @ head.T).argmax(1).cpu() == labels).sum())
    return correct / len(data)


class ZeroShotRetention(Plugin):
    """Records the backbone's zero-shot accuracy on never-trained tasks after every task.

    Parameters
    ----------
    stream : str
        Registered stream holding the held-out tasks (``cl list streams``).
    tasks : list of str or None
        Names of the held-out tasks in that stream; ``None`` takes all of them.
    stream_options : dict or None
        Options of that stream (as ``--set stream.X`` would give them).
    max_examples : int or None
        Test images scored per held-out task (``None``: all).
    batch_size : int
        Encoding batch size.

    Notes
    -----
    Results land per task under ``zero_shot_retention`` (``{task name: accuracy}``)
    and, before the first task is trained, under ``zero_shot_retention_before``.
    """

    name = "zero-shot-retention"

    def __init__(
        self,
        *,
        stream: str = "split-digits",
        tasks: list[str] | None = None,
        stream_options: dict | None = None,
        max_examples: int | None = None,
        batch_size: int = 256,
    ) -> None:
        import streams

        if max_examples is not None and max_examples <= 0:
            raise ValueError(f"zero-shot-retention max_examples must be positive, got {max_examples}.")
        if batch_size <= 0:
            raise ValueError(f"zero-shot-retention batch_size must be positive, got {batch_size}.")
        held = streams.get(stream, **(stream_options or {}))
        names = list(held.task_names)
        wanted = names if tasks is None else list(tasks)
        unknown = [n for n in wanted if n not in names]
        if unknown or not wanted:
            raise ValueError(
                f"zero-shot-retention tasks {unknown or wanted} are not in stream {stream!r}; "
                f"its tasks: {', '.join(names)}."
            )
        self.tasks: list[Task] = [held[names.index(n)] for n in wanted]
        self.max_examples, self.batch_size = max_examples, batch_size

    def measure(self, ctx: Context) -> dict[str, float]:
        """Zero-shot accuracy of ``ctx.backbone`` on every held-out task."""
        if not ctx.backbone.has_text:
            raise ValueError(
                f"zero-shot-retention needs a backbone with a text tower; {ctx.backbone.name!r} "
                "has none. Use a VLM backbone such as 'cl-tiny-vit' or 'ViT-B-16:openai'."
            )
        in_run = {t.key for t in ctx.stream}
        overlap = [t.name for t in self.tasks if t.key in in_run]
        if overlap:
            raise ValueError(
                f"zero-shot-retention held-out tasks {overlap} are tasks of the stream being "
                f"trained ({ctx.stream.name!r}); held-out tasks must never be trained."
            )
        return {
            t.name: zero_shot_accuracy(ctx.backbone, t, batch_size=self.batch_size,
                                       max_examples=self.max_examples, device=ctx.device)
            for t in self.tasks
        }

    def before_task(self, ctx: Context) -> None:
        if ctx.task_index == 0:
            ctx.record("zero_shot_retention_before", self.measure(ctx))

    def after_task(self, ctx: Context) -> None:
        ctx.record("zero_shot_retention", self.measure(ctx))

    def state_dict(self) -> dict[str, Any]:
        return {}
