"""``rail`` on a generated task-agnostic stream with a text tower: classes of domains not
trained yet stay reachable (MTIL Transfer > 0) where ``gda`` scores them ``-inf`` (Transfer 0).

The stream is split-digits relabelled task-agnostic (every task scored on all 10 classes,
as X-TAIL) and the backbone ``cl-tiny-vit`` with random weights, so zero-shot is near chance;
re-test on ``toy-xtail`` once it exists.
"""

from __future__ import annotations

import streams
from streams.core import Stream


def test_fusion_gives_transfer_on_unseen_domains_where_gda_has_none(run) -> None:
    digits = streams.get("split-digits")
    stream = Stream("digits-task-agnostic", digits.tasks, "task-agnostic")
    rail = run(stream, "rail", backbone="cl-tiny-vit", n_components=500)
    gda = run(stream, "gda", backbone="cl-tiny-vit")
    assert gda["metrics"]["mtil_transfer"] == 0.0
    assert rail["metrics"]["mtil_transfer"] > 0.0
    print("rail transfer", rail["metrics"]["mtil_transfer"], "diagonal",
          [rail["accuracy_matrix"][t][t] for t in range(len(stream))])
