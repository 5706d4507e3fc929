"""One-hot head against LingoCL's language-guided head, ``finetune`` on ``toy-cil`` with ``toy-clip``.

    python experiments/lingo/toy.py [--out runs/lingo-toy] [--seeds 0 1 2]

The claim under test (Ni et al., CVPR 2024, §4): replacing a randomly initialised head
trained on one-hot labels by frozen targets from a language encoder of the class names
reduces forgetting and raises final accuracy, with nothing else changed. Here the
strategy is ``finetune`` (an MLP on frozen toy-clip features, SGD, no replay) with its
defaults; the two arms differ only in ``head`` (``linear`` vs ``language``, targets from
toy-clip's own text tower, ``"a photo of a {}."``), alone and with exemplar replay
(``--plugin replay``, 200 examples: the paper adds the head to replay-based methods too).
Stream: ``toy-cil`` (the ten digit
classes of the toy world in 5 class-incremental tasks). Metrics: final average accuracy
and forgetting (Chaudhry et al. 2018, max-based; ``docs/design`` definitions), mean ± std
(sample std, ddof=1) over the seeds; each run is a normal ``cl`` run directory. Offline.
The numbers are in ``docs/lingo.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

HEADS = ("linear", "language")
#: arm name -> plugins of the run
ARMS = {"finetune": {}, "finetune + replay": {"replay": {"memory_size": 200}}}


def run(out: Path, seeds: list[int]) -> dict[str, list[dict[str, float]]]:
    """Run every arm and head for every seed into ``out/<arm>/<head>/seed-<s>``; return the
    metrics by ``"<arm> · <head>"``."""
    from cl.config import RunConfig, experiment

    rows: dict[str, list[dict[str, float]]] = {}
    for arm, plugins in ARMS.items():
        for head in HEADS:
            key = f"{arm} · {head}"
            rows[key] = []
            for seed in seeds:
                run_dir = out / arm.replace(" + ", "-") / head / f"seed-{seed}"
                if not (run_dir / "results.json").exists():
                    config = RunConfig(stream="toy-cil", strategy="finetune",
                                       backbone="toy-clip", strategy_options={"head": head},
                                       plugins=plugins, seed=seed, out=str(run_dir))
                    experiment.run(config, progress=False)
                m = json.loads((run_dir / "results.json").read_text())["metrics"]
                rows[key].append({"accuracy": m["average_accuracy"],
                                  "forgetting": m["forgetting"]})
    return rows


def table(rows: dict[str, list[dict[str, float]]]) -> str:
    """Markdown table: head, final accuracy and forgetting in percent, mean ± std."""
    lines = ["| strategy · head | final accuracy (%) | forgetting (%) | seeds |",
             "|---|---|---|---|"]
    for head, runs in rows.items():
        cells = []
        for key in ("accuracy", "forgetting"):
            values = [100 * r[key] for r in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {std:.1f}")
        lines.append(f"| {head} | {cells[0]} | {cells[1]} | {len(runs)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/lingo-toy"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    rows = run(args.out, args.seeds)
    print(table(rows))
    (args.out / "table.md").write_text(table(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
