"""LingoCL's language-guided head against our formulation written out (no reference code is public).

Ni et al., "Enhancing Visual Continual Learning with Language-Guided Supervision", CVPR 2024
(arXiv 2403.16124). No implementation was published and the paper's method section could not
be read here (abstract only; ``docs/lingo.md``), so the comparison is with the formulation of
:mod:`cl.models.language_head` written out independently here in numpy (float64), on
toy-clip's real text tower and the head of a ``finetune`` run:

* semantic targets ``t_c = g(P(name_c)) / ‖g(P(name_c))‖`` with ``P = "a photo of a {}."``
  and ``g`` toy-clip's text tower (ours: :func:`cl.models.language_head.language_targets`);
* logits ``cos(W_p h, t_c) / τ`` (ours: :class:`cl.models.language_head.LanguageHead`);
* the training loss ``−log softmax_y`` of those logits (ours: ``F.cross_entropy``).
"""

from __future__ import annotations

import common

NAME = "lingo"
DESCRIPTION = "LingoCL language-guided head vs its formulation written out (no public code)"
REFERENCES: tuple[common.Reference, ...] = ()


def run(refs: common.Refs) -> list[common.Row]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from cl.models.backbones import create_backbone
    from cl.models.language_head import LanguageHead, language_encoder, language_targets

    backbone = create_backbone("toy-clip")
    names = [f"digit {d}" for d in range(10)]
    targets = language_targets(names, language_encoder("clip", backbone))
    with torch.no_grad():
        raw = backbone.model.encode_text(
            backbone.tokenizer([f"a photo of a {n}." for n in names])).double().numpy()
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    rows = [common.Row(method="lingo", compared="semantic targets of 10 class names (toy-clip)",
                       max_abs=common.max_diff(targets, expected)[0], dtype="float32",
                       tol=1e-6)]
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the projection's initialisation
        head = LanguageHead(targets, in_features=32, temperature=0.1)
    h, y = torch.randn(16, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
    with torch.no_grad():
        logits = head(h)
        loss = F.cross_entropy(logits, y)
    W = head.projection.weight.detach().double().numpy()
    b = head.projection.bias.detach().double().numpy()
    z = h.double().numpy() @ W.T + b
    cos = (z / np.linalg.norm(z, axis=1, keepdims=True)) @ expected.T
    a, r = common.max_diff(logits, cos / 0.1)
    rows.append(common.Row(method="lingo", compared="logits cos(W_p h, t_c) / τ (τ = 0.1)",
                           max_abs=a, max_rel=r, dtype="float32", tol=1e-4))
    s = cos / 0.1
    nll = -(s[np.arange(16), y.numpy()] - np.log(np.exp(s).sum(1))).mean()
    a, r = common.max_diff(loss, nll)
    rows.append(common.Row(method="lingo", compared="cross-entropy over the language logits",
                           max_abs=a, max_rel=r, dtype="float32", tol=1e-5))
    return rows
