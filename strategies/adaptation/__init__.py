"""Mathematical and model parts of the adaptation baselines of the MTIL / X-TAIL tables.

Pure, tested building blocks for ``clip-finetune``, ``lwf``, ``wise-ft``, ``zscl``,
``moe-adapters`` and ``slca`` (issue 14), each module one concept:
:mod:`~strategies.adaptation.losses` (CLIP classification, LwF/ZSCL distillation,
ZSCL's weight constraint), :mod:`~strategies.adaptation.schedule` (the references'
warm-up + cosine learning rate), :mod:`~strategies.adaptation.weight_ensemble`
(WiSE-FT interpolation, ZSCL's running weight average),
:mod:`~strategies.adaptation.moe` (noisy top-k mixture of adapter experts with
activate-freeze), :mod:`~strategies.adaptation.moe_blocks` (attaching it to open_clip
residual blocks), :mod:`~strategies.adaptation.ddas` (MoE-Adapters' autoencoder
selector) and :mod:`~strategies.adaptation.slca` (SLCA's slow learner and its
per-task linear head). The strategies that use them are built on the adapting-strategy
base; proof of fidelity against the reference code is in ``docs/fidelity.md``.
"""
