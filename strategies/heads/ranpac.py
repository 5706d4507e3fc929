"""``ranpac``: RanPAC's random-projection ridge head on cached features (McDonnell et al., NeurIPS 2023).

Phase 2 of RanPAC only: a frozen VLM's cached features cannot take the
first-session adapter (Phase 1), which trains the backbone. See
:class:`strategies.estimators.ranpac.RanPAC`; the runner glue (label spaces,
``-inf`` for classes never fitted, resume state) is
:class:`strategies.heads.base.TrainingFreeStrategy`'s.
"""

from __future__ import annotations

from typing import Literal

from strategies.estimators.ranpac import RanPAC
from strategies.heads.base import TrainingFreeStrategy


class RanPACStrategy(TrainingFreeStrategy):
    """Random ReLU projection + ridge regression with exact incremental ``G`` and ``Q``.

    Parameters
    ----------
    n_components : int or None
        Projection width M (paper: 10,000); ``None``: ridge on the features.
    ridge : float or "auto"
        λ; ``"auto"`` picks it per task from ``ridge_grid`` on an 80/20 split of
        the task's training features (the reference's procedure).
    ridge_grid : list of float or None
        Default ``10^-8 … 10^8``.
    solver : {"auto", "dual", "primal"}
        ``"auto"``: the dual (kernel) form while the training samples seen are at most M
        (no M×M matrix; the checkpoint holds those samples' features and their n×n Gram),
        then ``G + λI`` (see :mod:`strategies.estimators.feature_ridge`).
    dtype : {"float64", "float32"}
        Storage of ``G`` once primal (M = 10,000: 800 MB or 400 MB; it is in the checkpoint).
    random_state : int
        Seeds the projection and the per-task split.
    """

    reports_conditioning = True

    def __init__(
        self,
        *,
        n_components: int | None = 10_000,
        ridge: float | Literal["auto"] = "auto",
        ridge_grid: list[float] | None = None,
        solver: Literal["auto", "dual", "primal"] = "auto",
        dtype: Literal["float64", "float32"] = "float64",
        random_state: int = 0,
    ) -> None:
        if ridge != "auto" and ridge_grid is not None:
            raise ValueError(f"ranpac option 'ridge_grid' is searched only with ridge='auto', and "
                             f"ridge={ridge!r} was given; set strategy.ridge=auto or leave "
                             "'ridge_grid' out.")
        model = RanPAC(n_components=n_components, alpha=ridge, alpha_grid=ridge_grid,
                       solver=solver, dtype=dtype, random_state=random_state)
        self._setup(model, ensemble=False, alpha_grid=None, val_fraction=0.2)
