"""LoRA-family strategies on open_clip, merged into the weights after every task.

* ``codyra`` — :class:`~strategies.lora.codyra.RankSelectiveLoRA` (CoDyRA, Lu et al. arXiv 2412.01004).
* ``lora`` — :class:`~strategies.lora.plain.LoRA`, fixed-rank LoRA through peft.

Modules: :mod:`~strategies.lora.config` (the options both share, validated),
:mod:`~strategies.lora.attention` (explicit q/k/v/out attention),
:mod:`~strategies.lora.gated` (gated layer, T_κ, κ schedule),
:mod:`~strategies.lora.placement` (targets and module surgery),
:mod:`~strategies.lora.base` (shared training/merging loop). Names below are
imported on first use (this package stays free of torch until then).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ExplicitAttention": "strategies.lora.attention",
    "RankSelectiveLoRA": "strategies.lora.codyra",
    "GatedLoRALinear": "strategies.lora.gated",
    "kappa_at": "strategies.lora.gated",
    "soft_threshold": "strategies.lora.gated",
    "TARGETS": "strategies.lora.placement",
    "LoRA": "strategies.lora.plain",
    "LoraOptions": "strategies.lora.config",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'strategies.lora' has no attribute {name!r}")


__all__ = [
    "TARGETS",
    "ExplicitAttention",
    "GatedLoRALinear",
    "LoRA",
    "LoraOptions",
    "RankSelectiveLoRA",
    "kappa_at",
    "soft_threshold",
]
