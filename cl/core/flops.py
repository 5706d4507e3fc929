"""FLOP counting: ``torch.utils.flop_counter.FlopCounterMode`` with the attention kernels it misses.

torch's counter has no formula for two kernels a CLIP ViT runs on CPU, so it counts them as 0:

- ``aten._native_multi_head_attention``, the fast path ``nn.MultiheadAttention`` takes
  whenever autograd is off (feature extraction, evaluation). It holds the whole attention
  block (QKV projection, the two attention products, the output projection): a ViT-B/16
  forward was counted 22.5 GFLOPs instead of 35.1 (a third missing).
- ``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward, the kernels behind
  ``F.scaled_dot_product_attention`` on CPU (pytorch/pytorch#195460; CUDA's flash and
  efficient kernels are counted).

:func:`flop_counter` adds formulas for exactly these ops, and only while torch itself has
none (a torch release that registers them is used as is). The formulas count a multiply-add
as 2 FLOPs, as torch does (``mm_flop``: ``2·m·n·k``), and reuse torch's own SDPA formulas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    flop_registry,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

__all__ = ["flop_counter", "native_mha_flops"]

Shape = tuple[int, ...]


def native_mha_flops(query: Shape, key: Shape, value: Shape, embed_dim: int, num_head: int,
                     *args: Any, **kwargs: Any) -> int:
    """FLOPs of ``aten._native_multi_head_attention`` (batch-first inputs).

    With query ``(B, L, E)`` and key/value ``(B, S, E)``: the three input projections
    ``2·B·L·E² + 2·2·B·S·E²``, the scores ``Q Kᵀ`` and the weighted values, ``2·B·L·S·E``
    each (summed over the heads, ``E = heads · head_dim``), and the output projection
    ``2·B·L·E²`` (Vaswani et al. 2017, Sec. 3.2.2). Softmax, scaling and biases are not
    counted, as torch counts no element-wise op.

    Parameters
    ----------
    query, key, value : tuple of int
        Shapes ``(B, L, E)``, ``(B, S, E)``, ``(B, S, E)``.
    embed_dim, num_head : int
        ``E`` and the number of heads (the count does not depend on the split).

    Returns
    -------
    int
        The block's FLOPs.
    """
    if len(query) != 3 or len(key) != 3 or len(value) != 3:
        raise ValueError(f"native multi-head attention FLOPs need (B, L, E) inputs, got "
                         f"query {query}, key {key}, value {value}.")
    b, length, _ = query
    source = key[1]
    e = int(embed_dim)
    projections = 2 * b * length * e * e + 2 * 2 * b * source * e * e + 2 * b * length * e * e
    attention = 2 * (2 * b * length * source * e)
    return int(projections + attention)


def _cpu_flash_flops(query: Shape, key: Shape, value: Shape, *args: Any, **kwargs: Any) -> int:
    """torch's SDPA formula (``sdpa_flop_count``) for the CPU flash kernel."""
    return int(sdpa_flop_count(query, key, value))


def _cpu_flash_backward_flops(grad_out: Shape, query: Shape, key: Shape, value: Shape,
                              *args: Any, **kwargs: Any) -> int:
    """torch's SDPA backward formula (``sdpa_backward_flop_count``) for the CPU flash kernel."""
    return int(sdpa_backward_flop_count(grad_out, query, key, value))


def _missing_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas for the ops above that this torch leaves uncounted."""
    aten = torch.ops.aten
    wanted: list[tuple[str, Callable[..., int]]] = [
        ("_native_multi_head_attention", native_mha_flops),
        ("_scaled_dot_product_flash_attention_for_cpu", _cpu_flash_flops),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", _cpu_flash_backward_flops),
    ]
    formulas: dict[Any, Callable[..., int]] = {}
    for name, formula in wanted:
        if not hasattr(aten, name):
            continue
        packet = getattr(aten, name)
        if packet not in flop_registry:
            formulas[packet] = formula
    return formulas


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts the attention kernels listed above.

    Returns
    -------
    torch.utils.flop_counter.FlopCounterMode
        Use as a context manager; ``get_total_flops()`` after the block.
    """
    return FlopCounterMode(display=False, custom_mapping=_missing_formulas())
