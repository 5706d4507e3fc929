"""The adaptation baselines beside zero-shot, LoRA and CoDyRA on ``toy-mtil`` with ``toy-clip``.

    python experiments/adaptation/toy_mtil.py [--out runs/toy-adapt] [--domains colours shapes ...]

The toy world's MTIL table (Transfer / Average / Last, ZSCL, Zheng et al. 2023, Sec. 4.1:
:func:`cl.core.metrics.mtil_summary`) of ``clip-finetune``, ``lwf``, ``wise-ft``, ``zscl``,
``moe-adapters`` and ``slca`` beside ``zeroshot``, ``lora`` and ``codyra``, run as
``experiments/toy_clip/demo.py`` runs its four: one stream, seed, backbone, number of
iterations and batch for all, every run a normal ``cl`` run directory (``cl report DIR``,
``cl compare DIR ...``). Offline.

Settings and why (docs/adaptation.md, "On the offline toy world"): ``n_train = 100`` per class
(the size at which the DDAS threshold for CLIP features was chosen), ``n_test = 20`` per
class; the full fine-tuning family (clip-finetune, lwf, wise-ft, zscl) shares one rate,
``3e-4``, with a warm-up of ``ITERATIONS // 10`` steps (the references' 100 of 1000);
moe-adapters keeps its reference rate 1e-3, slca its SGD rate 0.01 with the head started from
the class prompts (as the MTIL configs); lora and codyra as in the demo. zscl distils on the
stream's held-out reference set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments" / "toy_clip"))

import demo  # experiments/toy_clip/demo.py: the tables and the figure

STREAM_OPTIONS = {"n_train": 100, "n_test": 20}
SEED = 0
ITERATIONS, BATCH = 20, 32
COMMON = {"iterations": ITERATIONS, "batch_size": BATCH}
FINETUNE = {**COMMON, "lr": 3e-4, "warmup": max(1, ITERATIONS // 10)}
#: run name -> (strategy, options)
RUNS: dict[str, tuple[str, dict]] = {
    "zeroshot": ("zeroshot", {}),
    "lora": ("lora", {**COMMON, "rank": 32, "lr": 1e-3, "encoders": "vision"}),
    "codyra": ("codyra", dict(COMMON)),
    "clip-finetune": ("clip-finetune", dict(FINETUNE)),
    "lwf": ("lwf", dict(FINETUNE)),
    "wise-ft": ("wise-ft", dict(FINETUNE)),
    "zscl": ("zscl", {**FINETUNE, "reference_batch_size": BATCH,
                      "ensemble_every": max(1, ITERATIONS // 10)}),
    "moe-adapters": ("moe-adapters", {**COMMON, "warmup": max(1, ITERATIONS // 10)}),
    "slca": ("slca", {**COMMON, "head_init": "text"}),
}


def run_all(out: Path, domains: list[str] | None) -> dict[str, dict]:
    """Run every entry of :data:`RUNS` into ``out/<name>``; return their results.json."""
    from cl.config import RunConfig, experiment

    options = dict(STREAM_OPTIONS) | ({"domains": list(domains)} if domains else {})
    results = {}
    for name, (strategy, strategy_options) in RUNS.items():
        start = time.perf_counter()
        config = RunConfig(stream=demo.STREAM, stream_options=dict(options), strategy=strategy,
                           strategy_options=dict(strategy_options), backbone=demo.BACKBONE,
                           seed=SEED, device="cpu", out=str(out / name))
        results[name] = experiment.run(config, progress=False).results
        print(f"{name:13s} done in {time.perf_counter() - start:6.1f} s", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of the runs (default runs/toy-adapt-<time>)")
    parser.add_argument("--domains", nargs="+", default=None,
                        help="toy-mtil domains in task order (default: the stream's 8)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or Path("runs") / f"toy-adapt-{time.strftime('%Y%m%d-%H%M%S')}"
    start = time.perf_counter()
    results = run_all(out, args.domains)
    report = f"{demo.mtil_table(results)}\n\n{demo.per_task_table(results)}\n"
    figure = demo.plot(results, out / "mtil.png")
    (out / "mtil.md").write_text(report)
    (out / "mtil.json").write_text(json.dumps(
        {n: r["metrics"] | {"trainable_parameters": r["compute"][0].get("trainable_parameters")}
         for n, r in results.items()}, indent=2) + "\n")
    print(f"\n{report}\nwall time {time.perf_counter() - start:.0f} s; table {out / 'mtil.md'}, "
          f"figure {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
