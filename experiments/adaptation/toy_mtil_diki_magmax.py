"""DIKI and MagMax beside zero-shot and sequential fine-tuning on ``toy-mtil`` with ``toy-clip``.

    python experiments/adaptation/toy_mtil_diki_magmax.py [--out runs/toy-diki-magmax]

The same protocol as ``experiments/adaptation/toy_mtil.py`` (its stream, seed, 20 steps per
task, batch 32; its tables and figure), for four runs:

* ``zeroshot``;
* ``seq-ft``: ``clip-finetune`` on the image tower with MagMax's loss and optimiser settings
  (no label smoothing, weight decay 0.1) at the toy rate 3e-4 with 2 warm-up steps — the
  sequential fine-tuning MagMax merges;
* ``magmax``: the same run with the merge (λ = 0.5) applied for evaluation, gradient clipping
  off so that its sequential trajectory is exactly ``seq-ft``'s;
* ``diki``: the reference's SGD rate 5, prefixes in 3 of toy-clip's 4 image blocks and 2 of
  its 3 text blocks (the reference: 8 of 12), 8 prefix tokens, calibration scale 64 (the
  reference divides by 512, ViT-B/16's embedding size; toy-clip's is 64).

The numbers are in ``docs/adaptation.md`` ("DIKI and MagMax on the toy world").
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import toy_mtil  # experiments/adaptation/toy_mtil.py: protocol, tables, figure

SEQ = {**toy_mtil.FINETUNE, "encoders": "vision", "label_smoothing": 0.0, "weight_decay": 0.1}
toy_mtil.RUNS = {
    "zeroshot": ("zeroshot", {}),
    "seq-ft": ("clip-finetune", dict(SEQ)),
    "magmax": ("magmax", {**SEQ, "max_grad_norm": 0.0}),
    "diki": ("diki", {**toy_mtil.COMMON, "depth_vision": 3, "depth_text": 2,
                      "calibration_scale": 64.0}),
}

if __name__ == "__main__":
    raise SystemExit(toy_mtil.main())
