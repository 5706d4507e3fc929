"""``zscl``: Zero-Shot Continual Learning (Zheng et al., "Preventing Zero-Shot Transfer Degradation
in Continual Learning of Vision-Language Models", ICCV 2023; ``Thunderbeee/ZSCL`` @ b96e714).

Continual fine-tuning (:class:`~strategies.adaptation.finetune.CLIPFinetune`) plus, as
``scripts/ZSCL.sh`` runs it (``finetune.py`` l. 100–330):

1. distillation in feature space against the *initial* model on a reference set
   (:func:`~strategies.adaptation.losses.clip_distillation`, T = 2, image and text terms):
   every step, a batch of reference images (no augmentation) is scored by the student
   and the teacher against the teacher's embeddings of the reference captions;
2. the L2 distance to the weights the task started from
   (:func:`~strategies.adaptation.losses.weight_l2_loss`, weight 1);
3. the weight ensemble: every ``ensemble_every`` steps the running mean of the weights
   absorbs the current ones (:class:`~strategies.adaptation.weight_ensemble.RunningWeightAverage`);
   after the task the model takes the mean.

The reference set is any image folder plus a caption file (ImageNet's training images and
the Conceptual Captions validation captions in the paper), or the stream's own
reference set: a stream may offer ``metadata["reference_set"]``, a callable returning
``(dataset of (image, anything), list of captions)`` (the offline toy world's held-out
scenes and their captions). Deviation: the teacher's caption embeddings are computed once
per teacher (the reference recomputes the same values every step). Fidelity:
``docs/fidelity.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from cl.core.strategy import Context, TaskData
from strategies.adaptation.base import Term
from strategies.adaptation.finetune import CLIPFinetune, distillation_term, frozen_copy
from strategies.adaptation.losses import weight_l2_loss
from strategies.adaptation.options import ZSCLOptions
from strategies.adaptation.weight_ensemble import RunningWeightAverage

#: captions encoded per forward of the teacher's text tower
TEXT_CHUNK = 256


class ImagesOnly(Dataset):
    """Items ``(transform(image), 0)`` of a dataset of ``(image, anything)`` (captions, labels)."""

    def __init__(self, dataset: Dataset, transform: Any) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.dataset[index][0]), 0


def resolve(path: str, data_root: str | None) -> Path:
    """``path`` as given when absolute, else under ``data_root`` (or the working directory)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or data_root is None else Path(data_root).expanduser() / p


def reference_set(options: ZSCLOptions, data_root: str | None, stream: Any
                  ) -> tuple[Dataset, list[str]]:
    """The reference images (a dataset of ``(image, anything)``) and captions.

    Raises
    ------
    FileNotFoundError
        The image folder or caption file does not exist (the message names it).
    ValueError
        No reference set given and the stream offers none, or no caption.
    """
    from streams.folders import image_folder

    if options.reference_images:
        images = image_folder(resolve(options.reference_images, data_root))
        captions_file = resolve(options.reference_texts, data_root)
        if not captions_file.is_file():
            raise FileNotFoundError(
                f"zscl reference_texts {str(captions_file)!r} does not exist; give a text file "
                "with one caption per line (relative to --data-root or absolute).")
        texts = [line.strip() for line in captions_file.read_text().splitlines() if line.strip()]
    else:
        offer = getattr(stream, "metadata", {}).get("reference_set")
        if offer is None:
            raise ValueError(
                f"zscl needs a reference set, and stream {getattr(stream, 'name', stream)!r} "
                "offers none; set strategy.reference_images (an image folder) and "
                "strategy.reference_texts (one caption per line).")
        images, texts = offer()
        texts = list(texts)
    if not texts or not len(images):
        raise ValueError("zscl's reference set is empty; it needs images and captions.")
    return images, texts


class ZSCL(CLIPFinetune):
    """ZSCL: fine-tuning with reference-set distillation, an L2 anchor and a weight ensemble.

    Parameters
    ----------
    options : ZSCLOptions, optional
        Hyper-parameters (defaults: ``scripts/ZSCL.sh``).
    data_root : str or None
        Where relative reference paths live (the run's ``--data-root``; filled by the
        library from the run config).
    **overrides
        Fields of the options to change; these are the strategy's config options.
    """

    label = "zscl"
    options_class = ZSCLOptions
    options: ZSCLOptions

    def __init__(self, options: ZSCLOptions | None = None, /, *, data_root: str | None = None,
                 **overrides: Any) -> None:
        super().__init__(options, **overrides)
        self.data_root = data_root
        self._initial: nn.Module | None = None
        self._reference: tuple[Dataset, list[str]] | None = None
        self._initial_text: torch.Tensor | None = None
        self._teacher: nn.Module | None = None
        self._teacher_text: torch.Tensor | None = None
        self._anchors: list[torch.Tensor] = []
        self._average: RunningWeightAverage | None = None
        self._second: Any = None

    def check_run(self, backbone: Any, stream: Any) -> dict[str, Any]:
        """The reference set exists before the run starts: the files named by
        ``reference_images``/``reference_texts``, or the stream's own."""
        o = self.options
        if o.reference_images:
            folder, texts = resolve(o.reference_images, self.data_root), \
                resolve(o.reference_texts, self.data_root)
            for option, path, ok in (("reference_images", folder, folder.is_dir()),
                                     ("reference_texts", texts, texts.is_file())):
                if not ok:
                    raise FileNotFoundError(
                        f"zscl option {option!r}: {str(path)!r} does not exist (relative paths "
                        "are under --data-root).")
        elif getattr(stream, "metadata", {}).get("reference_set") is None:
            raise ValueError(
                f"zscl needs a reference set, and stream {stream.name!r} offers none; set "
                "strategy.reference_images (an image folder) and strategy.reference_texts (one "
                "caption per line).")
        return super().check_run(backbone, stream)

    def _on_bind(self, model: nn.Module) -> None:
        if self.options.teacher == "zeroshot":  # the backbone as given is the zero-shot model
            self._initial = frozen_copy(model)

    def _caption_embeddings(self, teacher: nn.Module, texts: list[str]) -> torch.Tensor:
        device = next(teacher.parameters()).device
        parts = []
        with torch.no_grad(), self.autocast(device):
            for start in range(0, len(texts), TEXT_CHUNK):
                tokens = self._backbone.tokenizer(texts[start:start + TEXT_CHUNK]).to(device)
                parts.append(teacher.encode_text(tokens, normalize=True))
        return torch.cat(parts)

    def _begin_task(self, model: nn.Module, ctx: Context) -> None:
        if self._reference is None:
            images, texts = reference_set(self.options, self.data_root, ctx.stream)
            self._reference = ImagesOnly(images, self._backbone.preprocess), texts
        texts = self._reference[1]
        if self.options.teacher == "zeroshot":
            if self._initial is None:
                raise RuntimeError("zscl lost its zero-shot teacher; bind the backbone first.")
            self._teacher = self._initial
            if self._initial_text is None:
                self._initial_text = self._caption_embeddings(self._initial, texts)
            self._teacher_text = self._initial_text
        else:
            self._teacher = frozen_copy(model)
            self._teacher_text = self._caption_embeddings(self._teacher, texts)
        start = self.trained(model)
        if self.options.l2_weight > 0:
            self._anchors = [p.detach().clone() for p in start.values()]
        if self.options.ensemble_every > 0:
            self._average = RunningWeightAverage(
                {k: p.detach() for k, p in start.items()}, every=self.options.ensemble_every,
                total=self.options.iterations)

    def _extra_terms(self, model: nn.Module, step: int, ctx: Context) -> list[Term]:
        if self._teacher is None or self._teacher_text is None or self._reference is None:
            raise RuntimeError("zscl trains only between before_task and after_task.")
        if step == 0:
            seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
            self._second = self.cycle(self._reference[0], self.options.reference_batch_size,
                                      torch.Generator().manual_seed(seed), ctx)
        x, _ = next(self._second)
        with self.autocast(next(model.parameters()).device):
            terms = [distillation_term(model, self._teacher, x, self._teacher_text, self.options)]
        if self._anchors:
            params = list(self.trained(model).values())
            terms.append((self.options.l2_weight * weight_l2_loss(params, self._anchors), None))
        return terms

    def _after_step(self, iteration: int, total: int) -> None:
        if self._average is not None:
            current = {k: p.detach() for k, p in self.trained(self._backbone.model).items()}
            self._average.after_step(iteration, current)

    def _end_task(self, model: nn.Module, data: TaskData | None, ctx: Context) -> None:
        if self._average is not None:
            self.write_parameters(model, self._average.average)
            ctx.record("weight_ensemble_snapshots", self._average.count)
        self._abort(model)

    def _abort(self, model: nn.Module) -> None:
        self._teacher = self._teacher_text = self._average = self._second = None
        self._anchors = []

    def memory_bytes(self) -> int:
        """The zero-shot teacher and its caption embeddings, kept between tasks, in bytes."""
        kept = [*(self._initial.parameters() if self._initial is not None else ())]
        if self._initial_text is not None:
            kept.append(self._initial_text)
        return sum(t.numel() * t.element_size() for t in kept)


__all__ = ["ZSCL", "ImagesOnly", "reference_set", "resolve"]
