"""The avalanche model's parts: a head that masks untrained classes, and the frozen encoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cl.models.language_head import classifier

MASK_VALUE = -1000.0
"""Logit of classes not trained yet (avalanche ``IncrementalClassifier``'s ``mask_value``)."""


class MaskedHead(nn.Module):
    """Linear (``hidden == 0``) or one-hidden-layer MLP head with masked untrained classes.

    Parameters
    ----------
    dim : int
        Input (feature) size D.
    n_classes : int
        Outputs, one per global class.
    hidden : int
        Hidden width; 0 for a linear head.
    targets : Tensor (n_classes, D_t), optional
        LingoCL's frozen semantic targets: the last layer is then a
        :class:`~cl.models.language_head.LanguageHead` instead of a one-hot linear layer.
    temperature : float
        τ of the language-guided head.

    Forward maps (N, D) to (N, n_classes); classes not yet in ``active`` get
    :data:`MASK_VALUE`.
    """

    def __init__(self, dim: int, n_classes: int, hidden: int = 0, *,
                 targets: torch.Tensor | None = None, temperature: float = 0.1) -> None:
        super().__init__()
        self.net: nn.Module = classifier(dim, n_classes, hidden, targets=targets,
                                         temperature=temperature)
        self.register_buffer("active", torch.zeros(n_classes, dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x.float())
        return out.masked_fill(~self.active, MASK_VALUE)


class FrozenEncoder(nn.Module):
    """The backbone's image encoder as a frozen module: (N, 3, H, W) → (N, D) float32.

    Copies (LwF keeps a copy of the model) share the backbone: it never changes.
    """

    def __init__(self, backbone: Any) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.backbone.encode_images(x).float()

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenEncoder:
        return FrozenEncoder(self.backbone)
