"""Training-free strategies on cached features: zero-shot CLIP, NMC, GDA, and the analytic
heads RanPAC, FeCAM, RAIL and random-feature LDA (their shared glue and zero-shot ensemble:
:mod:`strategies.heads.base`)."""
