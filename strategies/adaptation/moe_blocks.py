"""Attach :class:`~strategies.adaptation.moe.MixtureOfAdapters` to open_clip residual blocks.

MoE-Adapters places its experts in parallel with the MLP of every residual block of
both towers (reference ``--ffn_adapt --ffn_option parallel
--ffn_adapt_where AdapterDoubleEncoder``; ``mtil/clip/model.py`` l. 463–511):

``x' = x + Attn(LN₁(x))``, ``out = x' + MLP(LN₂(x')) + MoE(x')``

where the experts see the residual stream ``x'`` itself (no layer norm) and the
router its first token. :class:`MoEBlock` wraps an open_clip
``ResidualAttentionBlock`` and computes exactly that (layer-scale modules ``ls_1``,
``ls_2`` included, identity in CLIP); with ``route = None`` it is the plain block,
which is how DDAS sends an input to the zero-shot model (reference l. 471–473).
Blocks are found as :mod:`strategies.lora.placement` finds them (``visual.transformer``
and ``transformer`` residual blocks).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from strategies.adaptation.moe import MixtureOfAdapters
from strategies.lora.config import towers_of
from strategies.lora.placement import TOWERS, check_model


class MoEBlock(nn.Module):
    """An open_clip residual block with a mixture of adapters in parallel to its MLP.

    Parameters
    ----------
    block : nn.Module
        open_clip ``ResidualAttentionBlock`` (self-attention; ``ln_1``, ``attn``, ``ls_1``,
        ``ln_2``, ``mlp``, ``ls_2``).
    moe : MixtureOfAdapters
    batch_first : bool
        Layout of the tower's activations: (N, L, D) when True, (L, N, D) otherwise.

    Attributes
    ----------
    route : int or None
        Router (task index) used by the forward pass; None bypasses the experts.
    """

    def __init__(self, block: nn.Module, moe: MixtureOfAdapters, *, batch_first: bool) -> None:
        super().__init__()
        missing = [n for n in ("ln_1", "attention", "ls_1", "ln_2", "mlp", "ls_2")
                   if not hasattr(block, n)]
        if missing or hasattr(block, "ln_1_kv"):
            raise TypeError(
                f"{type(block).__name__} is not an open_clip self-attention ResidualAttentionBlock "
                f"(missing {missing or ['nothing, but it is cross-attention']})."
            )
        self.block, self.moe, self.batch_first = block, moe, batch_first
        self.route: int | None = None

    def get_weight_dtype(self) -> torch.dtype:
        """The wrapped block's weight dtype (open_clip's ``get_cast_dtype`` asks block 0)."""
        return self.block.get_weight_dtype()

    def forward(
        self, q_x: torch.Tensor, k_x: torch.Tensor | None = None, v_x: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Same signature and output as the wrapped block, plus the experts' term."""
        if k_x is not None or v_x is not None:
            raise ValueError("MoEBlock wraps self-attention blocks; k_x and v_x must be None.")
        b = self.block
        x = q_x + b.ls_1(b.attention(q_x=b.ln_1(q_x), attn_mask=attn_mask))
        out = x + b.ls_2(b.mlp(b.ln_2(x)))
        if self.route is None:
            return out
        if self.batch_first:
            return out + self.moe(x, self.route)
        return out + self.moe(x.transpose(0, 1), self.route).transpose(0, 1)


def _resblocks(model: nn.Module, tower: str) -> tuple[nn.ModuleList, bool]:
    transformer = model.get_submodule(TOWERS[tower])
    return transformer.resblocks, bool(getattr(transformer, "batch_first", True))


def attach_experts(
    model: nn.Module, encoders: str, *, experts: int, top_k: int, bottleneck: int,
    dropout: float, scale: float, generator: torch.Generator,
) -> list[str]:
    """Wrap every residual block of the ``encoders`` towers in a :class:`MoEBlock` (in place).

    Expert weights are drawn under a forked RNG seeded from ``generator``, so torch's
    global generator is left untouched. Returns the wrapped blocks' names, e.g.
    ``visual.transformer.resblocks.0``.

    Raises
    ------
    ValueError
        A tower of ``encoders`` is missing, or experts are attached already.
    """
    check_model(model, encoders)
    if any(True for _ in moe_blocks(model)):
        raise ValueError("the model already carries MoE experts; detach_experts first.")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    names: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for tower in towers_of(encoders):
            resblocks, batch_first = _resblocks(model, tower)
            for i, block in enumerate(resblocks):
                ref = next(block.parameters())
                moe = MixtureOfAdapters(block.ln_2.normalized_shape[0], experts=experts,
                                        top_k=top_k, bottleneck=bottleneck, dropout=dropout,
                                        scale=scale).to(device=ref.device, dtype=ref.dtype)
                resblocks[i] = MoEBlock(block, moe, batch_first=batch_first)
                names.append(f"{TOWERS[tower]}.resblocks.{i}")
    return names


def detach_experts(model: nn.Module) -> None:
    """Replace every :class:`MoEBlock` by the block it wraps (in place)."""
    for tower in TOWERS:
        try:
            resblocks, _ = _resblocks(model, tower)
        except AttributeError:
            continue
        for i, block in enumerate(resblocks):
            if isinstance(block, MoEBlock):
                resblocks[i] = block.block


def moe_blocks(model: nn.Module) -> Iterator[tuple[str, MoEBlock]]:
    """(name, block) of every :class:`MoEBlock` in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, MoEBlock):
            yield name, module


def set_route(model: nn.Module, route: int | None) -> None:
    """Route every MoE block through router ``route``; None sends inputs to the plain model."""
    for _, block in moe_blocks(model):
        if route is not None and not 0 <= route < len(block.moe.gates):
            raise ValueError(f"route {route} does not exist; {len(block.moe.gates)} routers exist.")
        block.route = route
