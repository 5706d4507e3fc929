"""Token-level access to open_clip towers: embed, run blocks, pool, prompts and prefixes.

open_clip's ``VisionTransformer.forward`` is ``_embeds`` → ``transformer`` → ``_pool`` →
``@ proj``; its steps are private. This module gives them public, typed names so that a
method that changes the token sequence (prompt-tuning, Jia et al. 2022; L2P) or the
keys and values of attention (prefix-tuning, Li & Liang 2021; DualPrompt, CODA-Prompt)
is a few lines, and proves (``tests/models/test_tokens.py``) that without a prompt the
composition equals ``model.encode_image`` to 0.0 in float32:

>>> tokens = embed_tokens(visual, images)                 # (B, 1+N, D)
>>> tokens = insert_prompts(tokens, prompts)              # (B, 1+P+N, D), after [CLS]
>>> tokens = run_blocks(visual, tokens, prefixes={2: Prefix(k, v)})
>>> embedding = pool_and_project(visual, tokens, prompt_tokens=P)   # (B, E)

or in one call, :func:`forward_with_prompts`. Prefixes enter attention concatenated to the
block's keys and values (``prefix_mode="concat"``, prefix-tuning) or as DIKI's residual
attention beside the frozen one, with a per-sample weight (``prefix_mode="residual"``; see
:func:`prefix_attention`, defined in :mod:`cl.models.prefix_attention` and importable from
here). :func:`encode_text` runs the text tower the same way (equal to
``model.encode_text`` to 0.0 without prefixes).

Supported towers
----------------
open_clip's :class:`open_clip.transformer.VisionTransformer` (every CLIP ViT: OpenAI,
LAION, DataComp, MetaCLIP, the tiny ``cl-tiny-vit`` and ``toy-clip``) with learnable or
sin-cos positions, ``'tok'`` or ``'avg'`` pooling, ``final_ln_after_pool``, patch
dropout, and either block type for prompts. Prefixes need the default
:class:`~open_clip.transformer.ResidualAttentionBlock` (``nn.MultiheadAttention``
self-attention without ``ln_1_kv``); the ``CustomResidualAttentionBlock`` of
``qk_norm`` / scaled-cosine towers is refused with a ``TypeError``. Refused outright
(``TypeError`` naming the tower): ``ModifiedResNet`` (RN50…), ``TimmModel`` towers,
and towers with an attentional pooler (CoCa). Gradient checkpointing
(``set_grad_checkpointing``) is not applied by :func:`run_blocks`.

The frozen query of L2P-style methods
--------------------------------------
Prompt-selection methods query their pool with the *unprompted* model's image
embedding. That is ``model.encode_image`` — exactly what :mod:`cl.models.features`
caches for the training-free strategies (``backbone.encode_images``, keyed by the
backbone fingerprint), so a query pass over a fixed (non-augmented) split can be read
from the feature cache instead of re-run. The prompt strategies compute it in the
training step (the loader's shuffled batches carry no dataset indices to look rows up
by); its cost is one frozen forward without gradient.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from cl.models.prefix_attention import PREFIX_MODES, Prefix, block_forward, prefix_attention


def _visual_type() -> type:
    from open_clip.transformer import VisionTransformer
    return VisionTransformer


def check_tower(visual: nn.Module, *, prefixes: bool = False) -> None:
    """Raise ``TypeError`` unless ``visual`` is a supported open_clip vision tower.

    Parameters
    ----------
    visual : nn.Module
        ``model.visual`` of an open_clip CLIP model.
    prefixes : bool
        Also require blocks whose attention can take prefixes (see module docstring).

    Raises
    ------
    TypeError
        The tower is not an open_clip ``VisionTransformer``, has an attentional pooler,
        or (with ``prefixes``) has blocks other than ``ResidualAttentionBlock``.
    """
    if not isinstance(visual, _visual_type()):
        raise TypeError(
            f"token access needs an open_clip VisionTransformer tower, got "
            f"{type(visual).__name__}; use a ViT backbone such as 'ViT-B-16:openai', "
            "'cl-tiny-vit' or 'toy-clip' (ResNet and timm towers are not supported)."
        )
    if getattr(visual, "attn_pool", None) is not None:
        raise TypeError("token access does not support towers with an attentional pooler "
                        "(CoCa); use a CLIP ViT backbone.")
    if prefixes:
        _check_blocks(visual.transformer.resblocks, "image")


def depth(visual: nn.Module) -> int:
    """Number of residual blocks of the tower."""
    check_tower(visual)
    return len(visual.transformer.resblocks)


def embed_tokens(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Input tokens of the first block: patch embedding, [CLS], positions, patch dropout, ``ln_pre``.

    Parameters
    ----------
    visual : nn.Module
        A supported tower (:func:`check_tower`).
    images : torch.Tensor, shape (B, 3, H, W)
        Preprocessed images.

    Returns
    -------
    torch.Tensor, shape (B, 1 + N, D)
        [CLS] first, then the N patch tokens (fewer while patch dropout is active in
        training mode), as open_clip's ``VisionTransformer._embeds``.
    """
    check_tower(visual)
    x = visual.conv1(images)  # (B, D, gh, gw)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # (B, N, D)
    cls = visual.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.patch_dropout(x)
    return visual.ln_pre(x)


def insert_prompts(tokens: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """Insert prompt tokens right after [CLS] (prompt-tuning, VPT-shallow / L2P).

    Parameters
    ----------
    tokens : torch.Tensor, shape (B, 1 + N, D)
    prompts : torch.Tensor, shape (B, P, D) or (P, D)
        A (P, D) prompt is shared by the batch.

    Returns
    -------
    torch.Tensor, shape (B, 1 + P + N, D)
    """
    if prompts.dim() == 2:
        prompts = prompts.unsqueeze(0).expand(tokens.shape[0], -1, -1)
    if prompts.dim() != 3 or prompts.shape[0] != tokens.shape[0] or prompts.shape[2] != tokens.shape[2]:
        raise ValueError(f"prompts of shape {tuple(prompts.shape)} do not fit tokens of shape "
                         f"{tuple(tokens.shape)}; give (B, P, D) or (P, D) with D = "
                         f"{tokens.shape[2]} (the tower's width).")
    return torch.cat([tokens[:, :1], prompts.to(tokens.dtype), tokens[:, 1:]], dim=1)


def _check_blocks(blocks: nn.ModuleList, what: str) -> None:
    from open_clip.transformer import ResidualAttentionBlock
    for i, block in enumerate(blocks):
        if not isinstance(block, ResidualAttentionBlock) or hasattr(block, "ln_1_kv"):
            raise TypeError(
                f"prefix-tuning needs nn.MultiheadAttention blocks; {what} block {i} is "
                f"{type(block).__name__} (qk-norm / scaled-cosine towers). Use prompts "
                "without prefixes, or a CLIP ViT backbone such as 'ViT-B-16:openai'."
            )


def _run(blocks: nn.ModuleList, tokens: torch.Tensor, start: int, stop: int | None,
         prefixes: Mapping[int, Prefix], mode: str, weight: torch.Tensor | float | None,
         attn_mask: torch.Tensor | None, batch_first: bool) -> torch.Tensor:
    n = len(blocks)
    stop = n if stop is None else stop
    if not 0 <= start <= stop <= n:
        raise ValueError(f"block range {start}:{stop} is outside the tower's {n} blocks.")
    bad = [layer for layer in prefixes if not 0 <= layer < n]
    if bad:
        raise ValueError(f"prefix layer {bad[0]} is outside the tower's blocks 0…{n - 1}.")
    if mode not in PREFIX_MODES:
        raise ValueError(f"prefix mode {mode!r} is not one of {list(PREFIX_MODES)}.")
    for i in range(start, stop):
        prefix = prefixes.get(i)
        if prefix is not None and prefix.key.shape[-2] == 0:
            prefix = None  # attention over no extra keys: the block's own forward
        if prefix is None and not batch_first:
            tokens = blocks[i](tokens.transpose(0, 1), attn_mask=attn_mask).transpose(0, 1)
        else:
            tokens = block_forward(blocks[i], tokens, prefix, mode=mode, weight=weight,
                                   attn_mask=attn_mask)
    return tokens


def run_blocks(visual: nn.Module, tokens: torch.Tensor, start: int = 0, stop: int | None = None,
               *, prefixes: Mapping[int, Prefix] | None = None, prefix_mode: str = "concat",
               prefix_weight: torch.Tensor | float | None = None) -> torch.Tensor:
    """Run blocks ``start … stop-1`` of the tower on batch-first tokens.

    Parameters
    ----------
    visual : nn.Module
        A supported tower.
    tokens : torch.Tensor, shape (B, L, D)
    start, stop : int
        Block range (``stop=None``: to the last block), as Python slicing of
        ``visual.transformer.resblocks``.
    prefixes : mapping of int to Prefix, optional
        Prefix keys/values by absolute block index; blocks outside the range ignore theirs.
    prefix_mode : {"concat", "residual"}
        How the prefixes enter attention (:func:`prefix_attention`).
    prefix_weight : torch.Tensor of shape (B,) or (), float, or None
        ``w`` of the residual prefix term, every prefixed block.

    Returns
    -------
    torch.Tensor, shape (B, L, D)

    Raises
    ------
    ValueError
        A range or prefix layer outside ``0 … depth-1``, or an unknown ``prefix_mode``.
    """
    prefixes = dict(prefixes or {})
    check_tower(visual, prefixes=bool(prefixes))
    return _run(visual.transformer.resblocks, tokens, start, stop, prefixes, prefix_mode,
                prefix_weight, None, getattr(visual.transformer, "batch_first", True))


def check_text_tower(model: nn.Module, *, prefixes: bool = False) -> None:
    """Raise ``TypeError`` unless ``model`` is an open_clip ``CLIP`` with its own text tower
    (``token_embedding``, ``transformer``, ``attn_mask``); with ``prefixes``, also require
    ``ResidualAttentionBlock`` blocks. ``CustomTextCLIP`` (Hugging Face text towers) is not
    supported."""
    if not all(hasattr(model, a) for a in ("token_embedding", "transformer", "ln_final")):
        raise TypeError(
            f"text token access needs an open_clip CLIP with its own text transformer, got "
            f"{type(model).__name__}; use e.g. 'ViT-B-16:openai' or 'toy-clip' (Hugging Face "
            "text towers are not supported)."
        )
    if prefixes:
        _check_blocks(model.transformer.resblocks, "text")


def encode_text(model: nn.Module, text: torch.Tensor, *,
                prefixes: Mapping[int, Prefix] | None = None, prefix_mode: str = "concat",
                prefix_weight: torch.Tensor | float | None = None,
                normalize: bool = False) -> torch.Tensor:
    """The text tower's embedding with prefixes; ``model.encode_text`` without.

    open_clip's ``CLIP.encode_text`` step by step — token and positional embedding, the
    blocks under the causal ``model.attn_mask`` (prefix positions unmasked), ``ln_final``,
    the end-of-text pooling, ``text_projection`` — with :func:`block_forward` in the blocks
    that have a prefix. Equal to ``model.encode_text`` to 0.0 without prefixes (tested).

    Parameters
    ----------
    model : nn.Module
        An open_clip ``CLIP`` (:func:`check_text_tower`).
    text : torch.Tensor, shape (B, L)
        Token ids from the backbone's tokenizer.
    prefixes, prefix_mode, prefix_weight
        As :func:`run_blocks`, for the text blocks.
    normalize : bool
        L2-normalise the output.

    Returns
    -------
    torch.Tensor, shape (B, E)
    """
    from open_clip.transformer import text_global_pool

    prefixes = dict(prefixes or {})
    check_text_tower(model, prefixes=bool(prefixes))
    transformer = model.transformer
    cast_dtype = transformer.get_cast_dtype()
    x = model.token_embedding(text).to(cast_dtype) + model.positional_embedding.to(cast_dtype)
    x = _run(transformer.resblocks, x, 0, None, prefixes, prefix_mode, prefix_weight,
             model.attn_mask, getattr(transformer, "batch_first", True))
    x = text_global_pool(model.ln_final(x), text, model.text_pool_type,
                         eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = (model.text_projection(x) if isinstance(model.text_projection, nn.Linear)
             else x @ model.text_projection)
    return F.normalize(x, dim=-1) if normalize else x


def pool_and_project(visual: nn.Module, tokens: torch.Tensor, *, prompt_tokens: int = 0,
                     project: bool = True) -> torch.Tensor:
    """The tower's output embedding from the last block's tokens: pool, ``ln_post``, ``proj``.

    Parameters
    ----------
    visual : nn.Module
        A supported tower.
    tokens : torch.Tensor, shape (B, 1 + P + N, D)
    prompt_tokens : int
        P, the prompt tokens after [CLS] (:func:`insert_prompts`), left out of the
        pooling: ``'tok'`` pooling takes [CLS], ``'avg'`` the mean of the N image tokens.
    project : bool
        Apply the tower's projection ``proj``; ``False`` gives the pooled, normalised
        features of width D (what a timm ViT's head sees).

    Returns
    -------
    torch.Tensor, shape (B, E), or (B, D) without ``project``
        Unnormalised, as ``model.encode_image``.
    """
    check_tower(visual)
    image = tokens[:, 1 + prompt_tokens:]
    if visual.pool_type == "avg":
        pooled = (image if visual.final_ln_after_pool else visual.ln_post(image)).mean(dim=1)
    elif visual.pool_type == "tok":
        pooled = tokens[:, 0] if visual.final_ln_after_pool else visual.ln_post(tokens[:, 0])
    else:
        raise TypeError(f"pool_type {visual.pool_type!r} gives no single embedding; "
                        "use a CLIP ViT backbone ('tok' or 'avg' pooling).")
    if visual.final_ln_after_pool:
        pooled = visual.ln_post(pooled)
    return pooled @ visual.proj if project and visual.proj is not None else pooled


def pool_prompts(visual: nn.Module, tokens: torch.Tensor, prompt_tokens: int, *,
                 project: bool = True) -> torch.Tensor:
    """Mean of the prompt tokens' outputs after ``ln_post``, projected (L2P's ``head_type='prompt'``).

    Parameters
    ----------
    visual : nn.Module
    tokens : torch.Tensor, shape (B, 1 + P + N, D)
    prompt_tokens : int
        P > 0.
    project : bool
        Apply ``proj`` (as :func:`pool_and_project`).

    Returns
    -------
    torch.Tensor, shape (B, E), or (B, D) without ``project``
    """
    check_tower(visual)
    if prompt_tokens <= 0:
        raise ValueError(f"pool_prompts needs prompt tokens, got prompt_tokens={prompt_tokens}.")
    pooled = visual.ln_post(tokens[:, 1:1 + prompt_tokens]).mean(dim=1)
    return pooled @ visual.proj if project and visual.proj is not None else pooled


def forward_with_prompts(visual: nn.Module, images: torch.Tensor, *,
                         prompts: torch.Tensor | None = None, prompt_layer: int = 0,
                         prefixes: Mapping[int, Prefix] | None = None,
                         prefix_mode: str = "concat",
                         prefix_weight: torch.Tensor | float | None = None,
                         pool: str = "default") -> torch.Tensor:
    """The tower's embedding with prompt tokens and/or prefixes; ``model.encode_image`` without.

    Parameters
    ----------
    visual : nn.Module
        ``model.visual`` of an open_clip ViT.
    images : torch.Tensor, shape (B, 3, H, W)
    prompts : torch.Tensor, shape (B, P, D) or (P, D), optional
        Tokens inserted after [CLS] before block ``prompt_layer`` (0: at the input).
    prompt_layer : int
        Block index before which the prompts are inserted (0 … depth-1).
    prefixes : mapping of int to Prefix, optional
        Prefix keys/values by block index.
    prefix_mode, prefix_weight
        How the prefixes enter attention, as :func:`run_blocks`.
    pool : {"default", "prompts"}
        ``"default"``: the tower's own pooling with the prompts left out
        (:func:`pool_and_project`); ``"prompts"``: the mean of the prompt outputs
        (:func:`pool_prompts`).

    Returns
    -------
    torch.Tensor, shape (B, E)
    """
    if pool not in ("default", "prompts"):
        raise ValueError(f"pool={pool!r}; use 'default' or 'prompts'.")
    tokens = embed_tokens(visual, images)
    n = depth(visual)
    count = 0
    how = {"prefixes": prefixes, "prefix_mode": prefix_mode, "prefix_weight": prefix_weight}
    if prompts is not None:
        if not 0 <= prompt_layer < n:
            raise ValueError(f"prompt_layer={prompt_layer} is outside the tower's blocks 0…{n - 1}.")
        tokens = run_blocks(visual, tokens, 0, prompt_layer, **how)
        count = prompts.shape[-2]
        tokens = insert_prompts(tokens, prompts)
        tokens = run_blocks(visual, tokens, prompt_layer, None, **how)
    else:
        tokens = run_blocks(visual, tokens, **how)
    if pool == "prompts":
        return pool_prompts(visual, tokens, count)
    return pool_and_project(visual, tokens, prompt_tokens=count)


__all__ = ["PREFIX_MODES", "Prefix", "block_forward", "check_text_tower", "check_tower",
           "depth", "embed_tokens", "encode_text", "forward_with_prompts", "insert_prompts",
           "pool_and_project", "pool_prompts", "prefix_attention", "run_blocks"]
