"""Where the adapters go: target names, towers, and module surgery on open_clip CLIP.

LoRA is placed on the linears of every residual block of the chosen towers
(CoDyRA, Lu et al. arXiv 2412.01004: attention q, k, v, out and MLP c_fc,
c_proj). Attention projections only exist as modules once the block's
``nn.MultiheadAttention`` is swapped for :class:`ExplicitAttention`
(see :mod:`strategies.lora.attention`); :func:`restore_attention` swaps back.

Module names are the model's own dotted names, e.g.
``visual.transformer.resblocks.0.attn.q_proj`` or ``transformer.resblocks.1.mlp.c_fc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

from strategies.lora.attention import ExplicitAttention
from strategies.lora.config import TARGETS, check_targets, towers_of

Encoders = Literal["vision", "text", "both"]
ATTENTION_TARGETS: tuple[str, ...] = TARGETS[:4]
TOWERS: dict[str, str] = {"vision": "visual.transformer", "text": "transformer"}


def _blocks(model: nn.Module, tower: str) -> list[tuple[str, nn.Module]]:
    """(name, block) of the tower's residual blocks; ``ValueError`` when it has none."""
    prefix = TOWERS[tower]
    try:
        resblocks = model.get_submodule(f"{prefix}.resblocks")
    except AttributeError:
        resblocks = None
    if not isinstance(resblocks, nn.ModuleList) or len(resblocks) == 0:
        kind = "a text tower" if tower == "text" else "an open_clip VisionTransformer"
        raise ValueError(
            f"encoders includes {tower!r} but the model has no {prefix}.resblocks "
            f"({type(model).__name__} lacks {kind} made of open_clip residual blocks); "
            f"choose encoders among {[t for t in TOWERS if t != tower] or ['vision']}."
        )
    return [(f"{prefix}.resblocks.{i}", block) for i, block in enumerate(resblocks)]


def check_model(model: nn.Module, encoders: str) -> None:
    """``ValueError`` unless every tower of ``encoders`` has open_clip residual blocks."""
    for tower in towers_of(encoders):
        _blocks(model, tower)


def prepare(model: nn.Module, encoders: str, targets: Sequence[str]) -> list[str]:
    """Make the target linears addressable and return their module names.

    Swaps ``nn.MultiheadAttention`` for :class:`ExplicitAttention` in every block
    of the chosen towers when an attention projection is targeted (in place).

    Returns
    -------
    list of str
        Dotted names of the ``nn.Linear`` modules to adapt, block by block.
    """
    targets = check_targets(targets)
    names: list[str] = []
    for tower in towers_of(encoders):
        for block_name, block in _blocks(model, tower):
            if any(t in ATTENTION_TARGETS for t in targets):
                if isinstance(block.attn, nn.MultiheadAttention):
                    block.attn = ExplicitAttention.from_multihead(block.attn)
                names += [f"{block_name}.attn.{t}" for t in targets if t in ATTENTION_TARGETS]
            names += [f"{block_name}.mlp.{t}" for t in targets if t not in ATTENTION_TARGETS]
    for name in names:
        if not isinstance(model.get_submodule(name), nn.Linear):
            raise TypeError(f"{name} is not an nn.Linear; cannot place LoRA on it.")
    return names


def restore_attention(model: nn.Module) -> None:
    """Swap every :class:`ExplicitAttention` back to ``nn.MultiheadAttention`` (in place)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, ExplicitAttention):
            replace_module(model, name, module.to_multihead())


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Set submodule ``name`` (dotted) of ``model`` to ``new``."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def adapted_parameters(model: nn.Module, encoders: str, targets: Sequence[str]) -> list[str]:
    """Names of the base parameters that merging changes, in the plain open_clip layout.

    q/k/v updates land in ``attn.in_proj_weight``, out in ``attn.out_proj.weight``,
    MLP updates in ``mlp.c_fc.weight`` / ``mlp.c_proj.weight`` (biases never change).
    """
    targets = check_targets(targets)
    names: list[str] = []
    for tower in towers_of(encoders):
        for block_name, _ in _blocks(model, tower):
            if any(t in ("q_proj", "k_proj", "v_proj") for t in targets):
                names.append(f"{block_name}.attn.in_proj_weight")
            if "out_proj" in targets:
                names.append(f"{block_name}.attn.out_proj.weight")
            names += [f"{block_name}.mlp.{t}.weight" for t in targets if t in ("c_fc", "c_proj")]
    return names
