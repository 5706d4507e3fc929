"""Our training loop against a bare open_clip + AdamW step, and the data pipeline against the forward.

ViT-B/16 at 224 px with random weights (``open_clip.create_model("ViT-B-16")``, no
pretrained tag), on the device given (this CPU by default). Printed, in one run:

* **bare step** — a hand-written step on one fixed batch: ``encode_image`` and
  ``encode_text`` of the task's prompts, CLIP's image→text cross-entropy, ``backward``,
  ``AdamW.step``, every weight but the logit scale trained (clip-finetune's
  ``encoders="both"``). Forward, backward and optimiser are timed apart (median of
  ``--steps``).
* **our steps** — the real strategies' ``train_task`` (``clip-finetune``, ``zscl``,
  ``codyra``, and the image-text ``contrastive-ft``) for ``--steps`` iterations on the
  same data, a plugin timestamping every step. Steps 0 and 1 of the adapting base (step
  0 of the image-text loop) run under ``FlopCounterMode``; they are shown apart (FLOP
  counting and first-step setup), and the steady step is the median of the later ones.
  Ratio to the bare step: goal ≤ 1.10 for ``clip-finetune`` (the same arithmetic); the
  others add their method's own work (ZSCL: a teacher and a reference batch per step;
  CoDyRA: gated adapters; contrastive-ft: captions through the text tower).
* **data pipeline** — JPEG decode (PIL) + the backbone's preprocessing, images/s on one
  worker, against ``encode_image``'s images/s (no grad, ``--batch``) and the training
  step's images/s.

Usage::

    python experiments/benchmarks/bench_training.py                 # CPU, batch 2, 4 steps
    python experiments/benchmarks/bench_training.py --steps 8 --batch 64 --device cuda --clock wall
"""

from __future__ import annotations

import argparse
import io
import itertools
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

import streams
from cl.core.plugin import Plugin
from cl.core.runner import Runner
from cl.core.strategy import Context
from cl.models.backbones import create_backbone
from strategies.adaptation.clip_objective import clip_loss, prompts

ARCH = "ViT-B-16"


def clock() -> float:
    """CPU seconds of this process (``--clock cpu``, the default: steady on a shared machine,
    with one thread) or wall seconds (``--clock wall``, e.g. on a GPU)."""
    return time.process_time() if CLOCK == "cpu" else time.perf_counter()


CLOCK = "cpu"


class StepClock(Plugin):
    """Timestamps every finished training step (``after_batch``)."""

    name = "step-clock"

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def after_batch(self, loss: torch.Tensor, ctx: Context) -> None:
        self.stamps.append(clock())


def strategy_steps(name: str, options: dict[str, Any], stream_name: str, steps: int,
                   device: str) -> dict[str, Any]:
    """Per-step seconds of strategy ``name`` trained ``steps`` iterations on task 0."""
    backbone = create_backbone(ARCH, device=device)
    strategy = strategies_get(name, iterations=steps, **options)
    stepclock = StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(streams.get(stream_name), strategy, backbone, out_dir=tmp,
                        device=device, progress=False, plugins=[stepclock], batch_size=64)
        ctx = runner.context(0)
        data = runner.task_data(0)
        strategy.before_task(ctx)
        start = clock()
        strategy.train_task(data, ctx)
        fetch = clock()
        for i in range(strategy.options.batch_size):  # one batch: decode + preprocess
            data.dataset[i]
        fetch = clock() - fetch
    stamps = [start, *stepclock.stamps]
    durations = [b - a for a, b in itertools.pairwise(stamps)]
    counted = 2 if name != "contrastive-ft" else 1  # steps run under FlopCounterMode
    return {"first": durations[:counted], "steady": statistics.median(durations[counted:]),
            "flops": ctx.counters.get("train_flops", 0.0), "all": durations, "data": fetch}


def strategies_get(name: str, **options: Any) -> Any:
    import strategies

    return strategies.get(name, **options)


def bare_step(steps: int, batch: int, device: str) -> dict[str, float]:
    """Median forward, backward, optimiser and total seconds of a hand-written step."""
    backbone = create_backbone(ARCH, device=device)
    model, tokenizer = backbone.model, backbone.tokenizer
    stream = streams.get("toy-mtil")
    images = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    x = images.to(device)
    y = (torch.arange(batch) % stream[0].n_classes).to(device)
    tokens = tokenizer(prompts(stream.train_label_space(0))).to(device)
    params = [p for n, p in model.named_parameters() if n != "logit_scale"]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.1)
    model.train()
    parts: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": [], "total": []}
    for _ in range(steps):
        t0 = clock()
        loss = clip_loss(model.encode_image(x, normalize=True),
                         model.encode_text(tokens, normalize=True), y, model.logit_scale.exp())
        t1 = clock()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = clock()
        opt.step()
        t3 = clock()
        for key, sec in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
            parts[key].append(sec)
    return {k: statistics.median(v[1:] if len(v) > 1 else v) for k, v in parts.items()}


def pipeline(n: int, batch: int, device: str) -> dict[str, float]:
    """Images/s of JPEG decode + preprocessing (one worker) and of ``encode_image`` (no grad)."""
    backbone = create_backbone(ARCH, device=device)
    rng = np.random.default_rng(0)
    jpegs = []
    for _ in range(n):  # smooth random photos-like images, 500x375 as ImageNet's median
        small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(small).resize((500, 375), Image.BICUBIC).save(buf, "JPEG", quality=90)
        jpegs.append(buf.getvalue())
    start = clock()
    for blob in jpegs:
        backbone.preprocess(Image.open(io.BytesIO(blob)).convert("RGB"))
    decode = n / (clock() - start)
    x = torch.randn(batch, 3, 224, 224).to(device)
    with torch.no_grad():
        backbone.model.encode_image(x)
        times = []
        for _ in range(3):
            t0 = clock()
            backbone.model.encode_image(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(clock() - t0)
    return {"decode_per_worker": decode, "forward": batch / statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=2, help="images per training step")
    parser.add_argument("--steps", type=int, default=4, help="steps per strategy (>= 3)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=64, help="JPEGs decoded for the pipeline")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: process CPU time, one thread (default); wall: wall time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 for --clock cpu)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = args.clock
    torch.set_num_threads(args.threads)
    print(f"{ARCH}, random weights, 224 px, device {args.device}, {torch.get_num_threads()} "
          f"thread(s), batch {args.batch}, {args.steps} steps, {CLOCK} seconds")

    bare = bare_step(args.steps, args.batch, args.device)
    print("\nbare open_clip + AdamW step (median): " + ", ".join(
        f"{k} {v:.3f} s" for k, v in bare.items()))

    common = {"batch_size": args.batch}
    runs = {
        "clip-finetune": ("toy-mtil", {**common, "warmup": 1}),
        "zscl": ("toy-mtil", {**common, "warmup": 1, "reference_batch_size": args.batch}),
        "codyra": ("toy-mtil", common),
        "contrastive-ft": ("toy-captions", common),
    }
    print("\nstrategy          steady step   ratio to bare   data (1 batch)   steps under FLOP "
          "counting")
    for name, (stream_name, options) in runs.items():
        r = strategy_steps(name, options, stream_name, args.steps, args.device)
        first = ", ".join(f"{s:.2f}" for s in r["first"])
        print(f"  {name:<15} {r['steady']:9.3f} s   {r['steady'] / bare['total']:9.3f}x"
              f"      {r['data']:8.3f} s     {first} s   (train_flops {r['flops']:.3g})")
    print("  goal: clip-finetune / bare <= 1.10")

    p = pipeline(args.images, args.batch, args.device)
    step_rate = args.batch / bare["total"]
    print(f"\ndata pipeline: JPEG decode + preprocess {p['decode_per_worker']:.1f} images/s per "
          f"worker; encode_image (no grad) {p['forward']:.1f} images/s; training step "
          f"{step_rate:.2f} images/s")
    print(f"  workers to feed extraction: {p['forward'] / p['decode_per_worker']:.2f}; "
          f"to feed training: {step_rate / p['decode_per_worker']:.3f}")


if __name__ == "__main__":
    main()
