"""Toy world throughput on this machine: scenes, pixels, PIL images, tensors and captions per second.

In one run, on ``--images`` scenes (default 20,000) drawn from every domain of
the world (:data:`streams.toyworld.attributes.DOMAINS`), one process:

* drawing the scenes (:func:`streams.toyworld.dataset.domain_scenes`);
* rendering pixels (:func:`streams.toyworld.render.render`, a (32, 32, 3) uint8 array);
* dataset items as PIL images and as float tensors (what a ``DataLoader`` reads);
* five captions per scene (:func:`streams.toyworld.captions.captions`);
* peak resident memory of the process.

The glyph masks are cached, so the first pass is warmed up before timing.

Usage::

    python experiments/benchmarks/bench_toyworld.py [--images 20000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streams.toyworld.attributes import DOMAINS
from streams.toyworld.captions import captions
from streams.toyworld.dataset import SceneDataset, domain_scenes
from streams.toyworld.render import render


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10,.0f} /s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    args = parser.parse_args(argv)
    per_class = max(1, args.images // sum(len(d.values) for d in DOMAINS.values()))
    start = time.perf_counter()
    scenes, labels = [], []
    for domain in DOMAINS.values():
        s, y = domain_scenes(domain, per_class, seed=0, split="train")
        scenes += s
        labels += y.tolist()
    t_scenes = time.perf_counter() - start
    n = len(scenes)
    for scene in scenes[:2000]:  # warm the glyph cache
        render(scene)
    timings = {"scenes drawn": t_scenes}
    start = time.perf_counter()
    for scene in scenes:
        render(scene)
    timings["pixels rendered"] = time.perf_counter() - start
    for output in ("pil", "tensor"):
        data = SceneDataset(scenes, labels, output=output)
        start = time.perf_counter()
        for i in range(n):
            data[i]
        timings[f"dataset items ({output})"] = time.perf_counter() - start
    start = time.perf_counter()
    for scene in scenes:
        captions(scene, 5)
    timings["scenes captioned (5 each)"] = time.perf_counter() - start
    print(f"{n:,} scenes from {len(DOMAINS)} domains, one process")
    for name, seconds in timings.items():
        print(f"  {name:28s} {rate(n, seconds)}   ({seconds:.2f} s)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak resident memory         {peak:10,.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
