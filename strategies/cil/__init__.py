"""CLIP class-incremental methods that train small modules on frozen CLIP features.

``proof`` (PROOF), ``rapf`` (RAPF), ``engine`` (ENGINE), ``clap4clip`` (CLAP4CLIP):
one module per method, shared pieces (exemplar memory, text embeddings, the
CLIP contrastive loss) in :mod:`strategies.cil.common`. See ``docs/cil.md``.
"""
