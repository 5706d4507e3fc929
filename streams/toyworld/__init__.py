"""The toy world: procedurally rendered images with template captions, for offline
vision-language continual learning (``toy-clip``, ``toy-mtil``, ``toy-xtail``, ``toy-cil``).

Modules: :mod:`~streams.toyworld.attributes` (attributes, values, held-out design and
domains, as data), :mod:`~streams.toyworld.render` (scenes and pixels),
:mod:`~streams.toyworld.captions` (caption grammar), :mod:`~streams.toyworld.dataset`
(torch datasets). See ``docs/toy_world.md``.
"""
