"""Prompt-based continual learning on open_clip: ``l2p``, ``dualprompt``, ``coda-prompt``.

Rehearsal-free methods that keep the backbone frozen and learn prompts (and their keys)
plus a classifier, on the public training base (:class:`strategies.TrainingStrategy`) and
token access (:mod:`cl.models.tokens`). One module per concept:
:mod:`~strategies.prompts.options` (the options as frozen dataclasses, the references'
defaults), :mod:`~strategies.prompts.selection` (prompt pools and key–query matching),
:mod:`~strategies.prompts.losses` (old-class logit masking, orthogonality penalty),
:mod:`~strategies.prompts.coda` (CODA-Prompt's components), :mod:`~strategies.prompts.base`
(frozen query, head, masked loss), and the methods :mod:`~strategies.prompts.l2p`,
:mod:`~strategies.prompts.dualprompt`, :mod:`~strategies.prompts.coda_prompt`.
``docs/prompts.md`` describes them; ``docs/fidelity.md`` proves them against the references.
"""
