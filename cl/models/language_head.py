"""Language-guided classifier heads (LingoCL): frozen class-name targets from a language encoder.

Ni et al., "Enhancing Visual Continual Learning with Language-Guided Supervision", CVPR 2024
(arXiv 2403.16124). What the paper's abstract states, and this module implements: instead
of a randomly initialised classifier head trained on one-hot labels, pretrained language
models (PLMs) generate a *semantic target* for each class from its name; the targets are
frozen and serve as the supervision signal while the visual model trains, and they cover
the semantic correlation between all classes across tasks. No reference code is public.

**The paper's method section and its equations could not be read here** (the stored copies
of the paper return its abstract only), so no equation number is cited and the following
formulation is *ours*, chosen where the abstract leaves room, each choice an option or a
constant a user can change; the tests (``tests/models/test_language_head.py``) check this
formulation term by term, not the paper's:

* targets ``t_c = g(P(name_c)) / ‖g(P(name_c))‖`` for every class c of the whole label
  space, known from the start (the names of later tasks included — the abstract's "all
  classes across tasks"), with ``g`` the frozen language encoder and ``P`` the prompt
  template :data:`TEMPLATE` (ours: CLIP's ``"a photo of a {}."``);
* a trainable linear projection ``W_p`` from the visual feature size to the encoder's
  (ours: needed when the sizes differ; a linear layer with a bias);
* logits ``z_c = cos(W_p h, t_c) / τ`` (``h`` the visual feature): cosine and the
  temperature τ = 0.1 are ours (a dot product or another τ may be the paper's), trained
  with the strategy's cross-entropy over the classes it trains on (the same columns the
  one-hot head would use).

Language encoders (:func:`language_encoder`): ``"clip"`` — the run's own open_clip text
tower (offline with ``toy-clip``); any other value — a ``transformers`` encoder (hub name or
local directory) loaded with ``AutoTokenizer`` / ``AutoModel``, its last hidden states
mean-pooled over the attention mask (pooling: ours too).

Use from any strategy that trains a classifier (prompt methods included)::

    targets = stream_targets(ctx.stream, "clip", ctx.backbone)   # (n_classes, D_t)
    head = LanguageHead(targets, in_features=768, temperature=0.1)
    logits = head(features)          # (N, n_classes); head.targets never changes

or :func:`classifier` for a linear / MLP classifier whose last layer is the head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TEMPLATE = "a photo of a {}."
"""Prompt ``P`` wrapped around each class name before it is encoded."""

HEADS: tuple[str, ...] = ("linear", "language")
"""Head kinds a strategy with a classifier accepts (``strategy.head``)."""

Encoder = Callable[[list[str]], torch.Tensor]


def check_head(head: str, strategy: str) -> None:
    """``ValueError`` unless ``head`` is one of :data:`HEADS` (message names ``strategy``)."""
    if head not in HEADS:
        raise ValueError(f"{strategy} head must be one of {list(HEADS)}, got {head!r}; "
                         "'language' uses frozen class-name targets (LingoCL).")


def _clip_encoder(backbone: Any) -> Encoder:
    if not getattr(backbone, "has_text", False):
        name = getattr(backbone, "name", type(backbone).__name__)
        raise ValueError(
            f"language_encoder='clip' encodes class names with the backbone's text tower, but "
            f"backbone {name!r} has none; use a VLM backbone (e.g. 'toy-clip') or name a "
            "transformers encoder (e.g. language_encoder='bert-base-uncased')."
        )

    def encode(texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return backbone.encode_texts(texts).float().cpu()

    return encode


def _transformers_encoder(name: str) -> Encoder:
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:  # pragma: no cover - transformers is installed with open_clip
        raise ValueError(
            f"language_encoder={name!r} needs the 'transformers' package; pip install "
            "transformers, or use language_encoder='clip'."
        ) from err
    local = Path(name).expanduser()
    source = str(local) if local.exists() else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModel.from_pretrained(source).eval()
    except OSError as err:
        raise ValueError(
            f"language_encoder={name!r} could not be loaded by transformers ({err}); give a "
            "local directory saved with save_pretrained, a hub name reachable from here, "
            "or 'clip'."
        ) from err
    model.requires_grad_(False)

    def encode(texts: list[str]) -> torch.Tensor:
        batch = tokenizer(list(texts), padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state.float()           # (M, L, D)
        mask = batch["attention_mask"].unsqueeze(-1).float()            # (M, L, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)      # (M, D)

    return encode


def language_encoder(name: str, backbone: Any = None) -> Encoder:
    """A frozen text encoder ``texts → (M, D)`` float32 on CPU.

    Parameters
    ----------
    name : str
        ``"clip"``: the backbone's own text tower; otherwise a ``transformers`` model
        (hub name or a directory written by ``save_pretrained``), mean-pooled.
    backbone : Backbone, optional
        The run's backbone (needed for ``"clip"``).

    Raises
    ------
    ValueError
        ``"clip"`` with a backbone without a text tower, or a model transformers cannot load.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"language_encoder must be 'clip' or a transformers model name or "
                         f"directory, got {name!r}.")
    return _clip_encoder(backbone) if name == "clip" else _transformers_encoder(name)


def language_targets(class_names: Sequence[str], encoder: Encoder, *,
                     template: str = TEMPLATE) -> torch.Tensor:
    """Frozen semantic targets ``t_c = g(P(name_c)) / ‖·‖``, one row per class (C, D_t).

    Parameters
    ----------
    class_names : sequence of str, length C
        Every class of the label space, in logit order (later tasks' included).
    encoder : callable
        From :func:`language_encoder`.
    template : str
        Format string with one ``{}`` for the class name.
    """
    if "{}" not in template:
        raise ValueError(f"template must contain '{{}}' for the class name, got {template!r}.")
    if len(class_names) == 0:
        raise ValueError("language_targets needs at least one class name.")
    embeddings = encoder([template.format(name) for name in class_names])
    if embeddings.ndim != 2 or embeddings.shape[0] != len(class_names):
        raise ValueError(f"the language encoder returned shape {tuple(embeddings.shape)} for "
                         f"{len(class_names)} class names; expected ({len(class_names)}, D).")
    return F.normalize(embeddings.detach().float(), dim=-1)


def stream_targets(stream: Any, encoder: str, backbone: Any = None, *,
                   template: str = TEMPLATE) -> torch.Tensor:
    """Targets (n_classes, D_t) of every global class of ``stream``, row i = class id i.

    All class names of the stream are known from the start: the targets of classes of later
    tasks exist before those tasks are trained (LingoCL's abstract: targets of all classes
    across tasks).

    Parameters
    ----------
    stream : streams.core.Stream
    encoder : str
        ``"clip"`` or a ``transformers`` model (see :func:`language_encoder`).
    backbone : Backbone, optional
        The run's backbone (for ``"clip"``).
    """
    space = stream.task_label_space(tuple(range(len(stream))))
    names = dict(zip(space.class_ids, space.class_names, strict=True))
    return language_targets([names[i] for i in range(stream.n_classes)],
                            language_encoder(encoder, backbone), template=template)


class LanguageHead(nn.Module):
    """Cosine classifier against frozen semantic targets, after a trainable projection.

    Parameters
    ----------
    targets : Tensor (C, D_t)
        Semantic targets (:func:`language_targets`); kept as a buffer, never trained.
    in_features : int
        Size D_v of the visual features the head receives.
    temperature : float
        τ > 0 of ``cos(W_p h, t_c) / τ``.

    Attributes
    ----------
    targets : Tensor (C, D_t)
        The frozen, L2-normalised targets (a buffer: saved in ``state_dict``, no gradient).
    projection : nn.Linear
        ``W_p`` (D_v → D_t), trained with the visual model.

    Forward maps features (N, D_v) to logits (N, C).
    """

    def __init__(self, targets: torch.Tensor, in_features: int, *,
                 temperature: float = 0.1) -> None:
        super().__init__()
        if targets.ndim != 2:
            raise ValueError(f"targets must be (C, D), got shape {tuple(targets.shape)}.")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}.")
        self.temperature = float(temperature)
        self.register_buffer("targets", F.normalize(targets.detach().float(), dim=-1))
        self.projection = nn.Linear(in_features, targets.shape[1])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.projection(features.float()), dim=-1)     # (N, D_t)
        return z @ self.targets.T / self.temperature                     # (N, C)


def classifier(dim: int, n_classes: int, hidden: int, *, targets: torch.Tensor | None = None,
               temperature: float = 0.1) -> nn.Module:
    """A linear (``hidden == 0``) or one-hidden-layer MLP classifier (N, dim) → (N, C).

    With ``targets`` the last linear layer is a :class:`LanguageHead` (LingoCL); without,
    it is ``nn.Linear(·, n_classes)`` (one-hot head). The module is built from torch's
    global RNG (wrap the call in ``torch.random.fork_rng`` to seed it).
    """
    if targets is not None and targets.shape[0] != n_classes:
        raise ValueError(f"{targets.shape[0]} targets for {n_classes} classes; give one per "
                         "class of the label space.")
    body = [nn.Linear(dim, hidden), nn.ReLU()] if hidden else []  # built first: RNG order
    width = hidden or dim
    last: nn.Module = (LanguageHead(targets, width, temperature=temperature)
                       if targets is not None else nn.Linear(width, n_classes))
    return nn.Sequential(*body, last) if body else last


__all__ = ["HEADS", "TEMPLATE", "LanguageHead", "check_head", "classifier", "language_encoder",
           "language_targets", "stream_targets"]
