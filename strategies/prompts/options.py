"""Options of ``l2p``, ``dualprompt`` and ``coda-prompt`` as validated frozen dataclasses.

The defaults are the reference runs' on split CIFAR-100 (10 tasks):
``JH-LEE-KR/l2p-pytorch`` ``configs/cifar100_l2p.py`` + ``train_cifar100_l2p.sh``,
``JH-LEE-KR/dualprompt-pytorch`` ``configs/cifar100_dualprompt.py`` +
``train_cifar100_dualprompt.sh``, ``GT-RIPL/CODA-Prompt`` ``configs/cifar-100_prompt.yaml`` +
``experiments/cifar-100.sh``. The two JH-LEE-KR references scale the rate by the batch
(``lr · batch / 256``, ``main.py``): the defaults are the scaled rates. ``docs/prompts.md``
lists every option with its source; the ImageNet-R configs in ``experiments/imagenet-r/``
set the references' ImageNet-R values.

This module imports no torch (``cl list`` reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from strategies.adaptation.options import TrainerOptions, check_number, check_positive_int


def _check_layers(name: str, layers: tuple[int, ...]) -> tuple[int, ...]:
    for i, layer in enumerate(layers):
        check_positive_int(f"{name}[{i}]", layer, zero=True)
    if len(set(layers)) != len(layers):
        raise ValueError(f"{name} lists a layer twice: {list(layers)}.")
    return tuple(sorted(layers))


@dataclass(frozen=True, kw_only=True)
class PromptOptions(TrainerOptions):
    """What the three prompt methods share.

    Attributes
    ----------
    head : {"linear", "text", "language"}
        ``"linear"``: the references' linear classifier over every class of the stream on
        the pooled, normalised features (width D); ``"text"``: CLIP's text-embedding
        classifier ``s · î·t̂ᵀ`` on the projected features (frozen; no head parameters);
        ``"language"``: LingoCL's language-guided head (Ni et al., CVPR 2024;
        :class:`cl.models.language_head.LanguageHead`) on the pooled features: frozen
        class-name targets, a trainable projection, cosine logits at ``head_temperature``.
    language_encoder : str
        With ``head="language"``: ``"clip"`` (the backbone's text tower) or a
        ``transformers`` encoder (hub name or local directory), as ``finetune`` takes it.
    head_temperature : float
        With ``head="language"``: τ > 0 of the cosine logits ``cos(W_p h, t_c) / τ``.
    train_mask : bool
        The references' ``train_mask``: while training task t, the logits of every class
        outside task t are ``-inf`` (old-class logit masking).
    """

    head: Literal["linear", "text", "language"] = "linear"
    language_encoder: str = "clip"
    head_temperature: float = 0.1
    train_mask: bool = True
    optimizer: Literal["adamw", "adam", "sgd"] = "adam"
    schedule: Literal["cosine", "constant"] = "constant"
    clip_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head not in ("linear", "text", "language"):
            raise ValueError(f"head must be 'linear', 'text' or 'language', got {self.head!r}.")
        check_number("head_temperature", self.head_temperature, low_open=True)
        if not isinstance(self.language_encoder, str) or not self.language_encoder:
            raise ValueError(f"language_encoder must be 'clip' or a transformers model name or "
                             f"directory, got {self.language_encoder!r}.")
        if self.head != "language" and (self.language_encoder, self.head_temperature) != \
                ("clip", 0.1):
            raise ValueError(f"options 'language_encoder' and 'head_temperature' configure "
                             f"head='language', but head={self.head!r}; set "
                             "strategy.head=language or leave them out.")


@dataclass(frozen=True, kw_only=True)
class L2POptions(PromptOptions):
    """``l2p`` (Wang et al., CVPR 2022): a pool of prompts chosen by key matching, at the input.

    Attributes
    ----------
    pool_size : int
        M, prompts in the pool (``--size 10``).
    prompt_length : int
        L_p, tokens per prompt (``--length 5``).
    top_k : int
        N, prompts chosen per image (``--top_k 5``); N · L_p tokens are inserted.
    batchwise_prompt : bool
        Use the N prompts chosen most often in the batch for every image of it, at
        training and evaluation (``--batchwise_prompt True``, the reference's default).
    pull_constraint_coeff : float
        λ of the surrogate loss ``−λ · Σ γ(q, k_s) / B`` (``--pull_constraint_coeff 0.1``).
    """

    pool_size: int = 10
    prompt_length: int = 5
    top_k: int = 5
    batchwise_prompt: bool = True
    pull_constraint_coeff: float = 0.1
    lr: float = 0.03 * 16 / 256
    batch_size: int = 16
    epochs: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("pool_size", "prompt_length", "top_k"):
            check_positive_int(name, getattr(self, name))
        if self.top_k > self.pool_size:
            raise ValueError(f"top_k={self.top_k} exceeds pool_size={self.pool_size}.")
        check_number("pull_constraint_coeff", self.pull_constraint_coeff)


@dataclass(frozen=True, kw_only=True)
class DualPromptOptions(PromptOptions):
    """``dualprompt`` (Wang et al., ECCV 2022): a shared G-prompt and task E-prompts as prefixes.

    Attributes
    ----------
    g_layers, e_layers : tuple of int
        Blocks given the G-prompt (``[0, 1]``) and the E-prompt (``[2, 3, 4]``); blocks the
        tower does not have are left out (logged and recorded as ``prompt_layers``).
    g_length, e_length : int
        Prefix lengths (``--g_prompt_length 5``, ``--length 5``): each layer gets
        ``length`` prefix keys and as many values.
    pool_size : int
        E-prompts (``--size 10``), one per task while ``use_prompt_mask``.
    top_k : int
        E-prompts chosen per image (``--top_k 1``).
    use_prompt_mask : bool
        Train task t with E-prompt t instead of the matched one (``--use_prompt_mask True``).
    shared_prompt_pool : bool
        Start E-prompt t from E-prompt t−1 (``--shared_prompt_pool True``).
    batchwise_prompt : bool
        Majority vote of the batch's choices (``--batchwise_prompt True``; False on ImageNet-R).
    pull_constraint_coeff : float
        λ of the surrogate loss (``--pull_constraint_coeff 1.0``).
    """

    g_layers: tuple[int, ...] = (0, 1)
    e_layers: tuple[int, ...] = (2, 3, 4)
    g_length: int = 5
    e_length: int = 5
    pool_size: int = 10
    top_k: int = 1
    use_prompt_mask: bool = True
    shared_prompt_pool: bool = True
    batchwise_prompt: bool = True
    pull_constraint_coeff: float = 1.0
    lr: float = 0.03 * 24 / 256
    batch_size: int = 24
    epochs: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "g_layers", _check_layers("g_layers", tuple(self.g_layers)))
        object.__setattr__(self, "e_layers", _check_layers("e_layers", tuple(self.e_layers)))
        if set(self.g_layers) & set(self.e_layers):
            raise ValueError(f"g_layers {list(self.g_layers)} and e_layers "
                             f"{list(self.e_layers)} overlap; a block takes one prefix.")
        for name in ("g_length", "e_length", "pool_size", "top_k"):
            check_positive_int(name, getattr(self, name))
        if self.top_k > self.pool_size:
            raise ValueError(f"top_k={self.top_k} exceeds pool_size={self.pool_size}.")
        check_number("pull_constraint_coeff", self.pull_constraint_coeff)


@dataclass(frozen=True, kw_only=True)
class CodaPromptOptions(PromptOptions):
    """``coda-prompt`` (Smith et al., CVPR 2023): attention-weighted prompt components.

    Attributes
    ----------
    pool_size : int
        Components per layer, split evenly over the stream's tasks (``--prompt_param 100``).
    prompt_length : int
        L_p, prefix length (``8``): the first half are keys, the second values.
    layers : tuple of int
        Blocks given a prefix (``[0, 1, 2, 3, 4]``).
    ortho_mu : float
        Weight of the orthogonality penalty (``0.0`` in ``experiments/*.sh``: the
        Gram–Schmidt initialisation of each task's components replaces it).
    schedule : {"coda-cosine", "cosine", "constant"}
        ``"coda-cosine"``: the reference's ``CosineSchedule``, ``cos(99π·e / (200·(K−1)))``
        at epoch e of K.
    """

    pool_size: int = 100
    prompt_length: int = 8
    layers: tuple[int, ...] = (0, 1, 2, 3, 4)
    ortho_mu: float = 0.0
    schedule: Literal["coda-cosine", "cosine", "constant"] = "coda-cosine"  # type: ignore[assignment]
    clip_grad_norm: float = 0.0
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 20

    def __post_init__(self) -> None:
        coda = self.schedule == "coda-cosine"
        if coda:  # TrainerOptions knows only its own schedules
            object.__setattr__(self, "schedule", "constant")
        try:
            super().__post_init__()
        finally:
            if coda:
                object.__setattr__(self, "schedule", "coda-cosine")
        object.__setattr__(self, "layers", _check_layers("layers", tuple(self.layers)))
        for name in ("pool_size", "prompt_length"):
            check_positive_int(name, getattr(self, name))
        if self.prompt_length % 2:
            raise ValueError(f"prompt_length must be even (keys and values halves), got "
                             f"{self.prompt_length}.")
        check_number("ortho_mu", self.ortho_mu)
