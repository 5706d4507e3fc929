"""Training-free strategies on cached features: zero-shot CLIP, NMC, GDA (and their shared
zero-shot ensemble, :mod:`strategies.heads.base`)."""
