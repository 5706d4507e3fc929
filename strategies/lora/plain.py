"""``lora``: plain LoRA (Hu et al. 2022, arXiv 2106.09685) on open_clip, merged after every task.

Same placement and training loop as CoDyRA (:mod:`strategies.lora.codyra`) but
a fixed rank and no importance weights: ``y = W₀x + B·A·x`` with scale 1
(``lora_alpha = r``), A Kaiming-uniform and B zero. The adapters are peft's
(``LoraConfig`` + ``LoraModel`` injected in place into the backbone's model,
``merge_and_unload(safe_merge=True)`` after each task). Attention projections
are first split into explicit linears (:mod:`strategies.lora.attention`), since
peft cannot adapt q, k, v and out of an ``nn.MultiheadAttention`` separately.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from strategies.lora.base import MergedAdapterStrategy
from strategies.lora.config import LoraOptions

if TYPE_CHECKING:  # peft imports transformers (seconds): loaded only when training starts
    from peft.tuners.lora import LoraModel

ADAPTER = "default"


class LoRA(MergedAdapterStrategy):
    """Fixed-rank LoRA on an open_clip backbone, merged into the weights after each task.

    Parameters
    ----------
    options : LoraOptions, optional
        Hyper-parameters (defaults: :class:`~strategies.lora.config.LoraOptions`).
    **overrides
        Fields of :class:`~strategies.lora.config.LoraOptions` to change
        (``rank=4, lr=1e-3``); these are the strategy's config options.
    """

    label = "lora"
    options_class = LoraOptions

    def __init__(self, options: LoraOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(replace(options or LoraOptions(), **overrides))
        self._peft: LoraModel | None = None

    def _inject(
        self, model: nn.Module, names: list[str], generator: torch.Generator
    ) -> list[nn.Parameter]:
        from peft import LoraConfig
        from peft.tuners.lora import LoraModel

        # a regex is matched whole; a list matches by suffix ("transformer.resblocks.0..."
        # would also catch "visual.transformer.resblocks.0...")
        exact = "|".join(re.escape(n) for n in names)
        config = LoraConfig(r=self.options.rank, lora_alpha=self.options.rank, lora_dropout=0.0, bias="none",
                            target_modules=f"(?:{exact})", init_lora_weights=True)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # peft initialises A from the global generator
            self._peft = LoraModel(model, config, ADAPTER)
        if set(self._layers()) != set(names):
            raise RuntimeError(f"peft adapted {sorted(self._layers())}, expected {names}.")
        return [p for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]

    def _layers(self) -> dict[str, Any]:
        """{module name: peft ``LoraLayer``} of the adapters being trained."""
        if self._peft is None:
            return {}
        from peft.tuners.lora import LoraLayer

        return {n: m for n, m in self._peft.model.named_modules() if isinstance(m, LoraLayer)}

    def _kept_ranks(self) -> dict[str, int]:
        return {name: self.options.rank for name in self._layers()}

    def _delta_norms(self) -> dict[str, float]:
        with torch.no_grad():
            return {name: float(torch.linalg.matrix_norm(layer.get_delta_weight(ADAPTER).float()))
                    for name, layer in self._layers().items()}

    def _unload(self, model: nn.Module, merge: bool) -> None:
        if self._peft is None:
            return
        if merge:
            self._peft.merge_and_unload(safe_merge=True)
        else:
            self._peft.unload()
        self._peft = None
