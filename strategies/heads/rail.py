"""``rail``: RAIL's analytic head fused with zero-shot CLIP (Xu et al., NeurIPS 2024).

Training is :class:`strategies.estimators.rail.RAIL` (primal or dual) on each
task's cached features. Prediction on a backbone with a text tower is
:func:`strategies.estimators.rail.rail_fusion` over the label space it is
asked about: on task-agnostic streams (X-TAIL) that is every class of the
stream, so an image whose zero-shot prediction is a class not learned yet
keeps it, and classes of domains not trained yet are reachable (GDA and NMC
score them ``-inf``). Before any training the scores are CLIP's zero-shot
probabilities. Without a text tower (``pixels``) the scores are the regression
outputs, ``-inf`` for classes never fitted, as the other heads.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from cl.core.strategy import Context
from strategies.estimators.rail import RAIL, rail_fusion
from strategies.heads.base import TrainingFreeStrategy
from streams.core import LabelSpace, Stream


class RAILStrategy(TrainingFreeStrategy):
    """RAIL: primal (random-feature recursive ridge) or dual (kernel ridge) + zero-shot fusion.

    Parameters
    ----------
    form : {"primal", "dual"}
    n_components : int
        Primal random features M (reference: 15,000; ``R`` is M×M: 1.8 GB float64).
    ridge : float or None
        λ; ``None``: the reference's (primal 0.1, dual 0.001).
    gamma : float
        Dual kernel width (reference: 0.1).
    fusion : bool
        Fuse with zero-shot CLIP on backbones with a text tower.
    fusion_weight : float
        ``w`` of the fusion (reference: 0.8).
    dtype : {"float64", "float32"}
    solver : {"auto", "dual", "primal", "recursive"}
        Primal form: ``"auto"`` solves the ridge in its dual form while the samples seen are
        at most M, then ``G + λI``; ``"recursive"`` is the reference's Woodbury recursion
        (an M×M matrix from the first task).
    random_state : int
    """

    reports_conditioning = True

    def __init__(
        self,
        *,
        form: Literal["primal", "dual"] = "primal",
        n_components: int = 15_000,
        ridge: float | None = None,
        gamma: float = 0.1,
        fusion: bool = True,
        fusion_weight: float = 0.8,
        dtype: Literal["float64", "float32"] = "float64",
        solver: Literal["auto", "dual", "primal", "recursive"] = "auto",
        random_state: int = 0,
    ) -> None:
        if not 0.0 <= fusion_weight <= 1.0:
            raise ValueError(f"rail fusion_weight must lie in [0, 1], got {fusion_weight}.")
        if not fusion and fusion_weight != 0.8:
            raise ValueError(f"rail option 'fusion_weight' ({fusion_weight}) weighs the zero-shot "
                             "fusion, which fusion=False turns off; set strategy.fusion=true or "
                             "leave 'fusion_weight' out.")
        unused = {"primal": ("gamma", gamma, 0.1), "dual": ("n_components", n_components, 15_000)}
        option, value, default = unused.get(form, ("", None, None))
        if value != default:
            other = "dual" if form == "primal" else "primal"
            raise ValueError(f"rail option {option!r} ({value}) is used by form='{other}' only, "
                             f"and form={form!r} was chosen; set strategy.form={other} or leave "
                             f"{option!r} out.")
        model = RAIL(form=form, n_components=n_components, alpha=ridge, gamma=gamma,
                     dtype=dtype, solver=solver, random_state=random_state)
        self._setup(model, ensemble=False, alpha_grid=None, val_fraction=0.2)
        self.fusion, self.fusion_weight = fusion, float(fusion_weight)

    def check_run(self, backbone: Any, stream: Stream) -> dict[str, Any]:
        """``fusion`` is false on a backbone without a text tower (nothing to fuse with)."""
        if self.fusion and not getattr(backbone, "has_text", False):
            return {"fusion": False}
        return {}

    def predict(self, inputs: torch.Tensor, label_space: LabelSpace, ctx: Context) -> torch.Tensor:
        if not (self.fusion and getattr(ctx.backbone, "has_text", False)):
            return super().predict(inputs, label_space, ctx)
        x = inputs.detach().cpu().float()
        zero_shot = self._zero_shot(x, label_space, ctx)
        if not self.fitted:
            return torch.softmax(zero_shot, dim=-1)
        scores = self._model_logits(x, label_space)
        learned = ~torch.isinf(scores[0]) if len(x) else torch.zeros(len(label_space), dtype=torch.bool)
        return rail_fusion(zero_shot, torch.nan_to_num(scores, neginf=0.0), learned,
                           self.fusion_weight)
