"""``rail`` on ``toy-xtail`` with ``toy-clip``: classes of domains not trained yet stay
reachable through the zero-shot head (MTIL Transfer > 0), where ``gda`` scores them ``-inf``
(Transfer 0 by construction). RAIL (Xu et al., NeurIPS 2024), X-TAIL protocol, Sec. 3."""

from __future__ import annotations

import numpy as np

import streams


def test_fusion_gives_transfer_on_unseen_domains_where_gda_has_none(run) -> None:
    stream = streams.get("toy-xtail", n_test=10)
    assert stream.scenario == "task-agnostic"
    chance = 1 / stream.n_classes
    rail = run(stream, "rail", backbone="toy-clip", n_components=1000)
    gda = run(stream, "gda", backbone="toy-clip")
    assert gda["metrics"]["mtil_transfer"] == 0.0
    # toy-clip knows shapes and digits 0-4: before a domain is trained, rail names its
    # images through the zero-shot head, well above chance over the union of 19 classes
    assert rail["metrics"]["mtil_transfer"] > 2 * chance
    above = np.triu(np.array(rail["accuracy_matrix"], dtype=float), k=1)
    assert above[0, 1] > 3 * chance  # digits, before training on them
