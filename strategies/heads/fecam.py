"""``fecam``: FeCAM's Mahalanobis head on cached features (Goswami et al., NeurIPS 2023).

See :class:`strategies.estimators.fecam.FeCAM`; runner glue and the optional
zero-shot ensemble are :class:`strategies.heads.base.TrainingFreeStrategy`'s
(scores there are negative Mahalanobis distances).
"""

from __future__ import annotations

from typing import Any, Literal

from cl.core.strategy import Context, TaskData
from strategies.estimators.fecam import FeCAM
from strategies.heads.base import TrainingFreeStrategy
from streams.core import Stream


class FeCAMStrategy(TrainingFreeStrategy):
    """Per-class (or shared, or diagonal + low-rank) shrunk covariances, Mahalanobis distance.

    Parameters
    ----------
    covariance : {"per_class", "shared", "lowrank"}
        ``"per_class"`` is the paper; the others bound memory (C·D² numbers is
        26 GB for 11k classes at D = 768).
    rank : int
        Eigenpairs per class for ``"lowrank"``.
    normalize : bool
        L2-normalise features first.
    tukey_beta : float or None
        Tukey's power transform (needs non-negative features; off for CLIP).
    alpha1, alpha2 : float
        Shrinkage (the ViT reference's CIFAR-100 values: 1, 0).
    shrink_repeats : int
    normalize_covariance : bool
    memory_limit_gb : float
        Refuse per-class models larger than this before allocating.
    ensemble, alpha_grid, val_fraction
        Zero-shot ensemble as in ``gda`` (off by default: the paper has none).
    """

    def __init__(
        self,
        *,
        covariance: Literal["per_class", "shared", "lowrank"] = "per_class",
        rank: int = 16,
        normalize: bool = True,
        tukey_beta: float | None = None,
        alpha1: float = 1.0,
        alpha2: float = 0.0,
        shrink_repeats: int = 1,
        normalize_covariance: bool = True,
        memory_limit_gb: float = 8.0,
        ensemble: bool = False,
        alpha_grid: list[float] | None = None,
        val_fraction: float = 0.2,
    ) -> None:
        if covariance != "lowrank" and rank != 16:
            raise ValueError(f"fecam option 'rank' ({rank}) is the rank of covariance='lowrank' "
                             f"only, and covariance={covariance!r} was chosen; set "
                             "strategy.covariance=lowrank or leave 'rank' out.")
        model = FeCAM(covariance=covariance, rank=rank, normalize=normalize,
                      tukey_beta=tukey_beta, alpha1=alpha1, alpha2=alpha2,
                      shrink_repeats=shrink_repeats, normalize_covariance=normalize_covariance,
                      memory_limit_gb=memory_limit_gb)
        self._setup(model, ensemble, alpha_grid, val_fraction)

    def check_run(self, backbone: Any, stream: Stream) -> dict[str, Any]:
        """``rank`` must be below the feature dimension D (else the low-rank part is full rank),
        and ``ensemble`` is false without a text tower."""
        self._check_rank(getattr(backbone, "embed_dim", None), backbone.name)
        return super().check_run(backbone, stream)

    def _check_rank(self, dim: int | None, backbone: str) -> None:
        if self.model.covariance == "lowrank" and dim is not None and self.model.rank >= dim:
            raise ValueError(f"fecam option 'rank' ({self.model.rank}) must be smaller than the "
                             f"feature dimension of backbone {backbone!r} ({dim}); at "
                             f"rank >= {dim} use covariance='per_class', or set strategy.rank "
                             f"below {dim}.")

    def train_task(self, data: TaskData, ctx: Context) -> None:
        """Check ``rank`` against the features' dimension (known once a backbone has encoded
        images: ``pixels``), then train as every head."""
        if data.features is not None:
            self._check_rank(int(data.features.shape[1]), ctx.backbone.name)
        super().train_task(data, ctx)
