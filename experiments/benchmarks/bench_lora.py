"""LoRA / CoDyRA on open_clip ViT-B-32 (random weights, 224 px): inference overhead, step cost, memory.

Side by side, in one run:

* **forward** — ``encode_image`` of a ``--batch`` of 224 px images, under
  ``torch.no_grad``: the base model, the model after a CoDyRA task is merged
  (adapters with random B and gates, a third of the ranks pruned, folded into
  the weights, attention folded back to ``nn.MultiheadAttention``), and the
  *unmerged* peft LoRA model (both towers, all six targets, explicit q/k/v/out
  attention). Variants are timed round-robin ``--reps`` times and medians
  compared, so load changes on a shared CPU hit all alike. Goal: merged/base ≤ 1.02.
* **training step** — one optimiser step of the real strategies
  (``RankSelectiveLoRA`` vs ``LoRA``, rank 16, both towers, all targets, 10
  prompts, ``--train-batch`` images): ``train_task`` runs ``--steps`` iterations
  and a plugin timestamps every ``after_batch``; the first interval (adapter
  placement, optimiser creation) is dropped and the median of the rest is
  reported. CoDyRA's steps include the proximal gate update (κ > 0 in the
  second half). Goal: CoDyRA/LoRA ≤ 1.3.
* **memory** — growth of the process's resident memory (RSS, sampled every
  2 ms) over two training steps, each variant in a fresh process: CoDyRA,
  plain LoRA, and full fine-tuning (every weight trained with AdamW on the same
  loss). On CUDA (``--device cuda``) ``torch.cuda.max_memory_allocated`` is used.

Usage::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python experiments/benchmarks/bench_lora.py
    python experiments/benchmarks/bench_lora.py --reps 3 --steps 3 --no-memory   # quicker
    python experiments/benchmarks/bench_lora.py --reps 15 --no-steps --no-memory  # forward only
"""

from __future__ import annotations

import argparse
import copy
import logging
import multiprocessing as mp
import os
import statistics
import threading
import time
from typing import Any

import torch
from torch.utils.data import TensorDataset

import streams
from cl.core.plugin import Plugin
from cl.core.strategy import Context, TaskData
from cl.models.backbones import create_backbone
from strategies import LoRA, RankSelectiveLoRA
from strategies.lora.base import clip_loss, prompts
from strategies.lora.gated import GatedLoRALinear
from strategies.lora.placement import TARGETS, prepare, replace_module, restore_attention

ARCH = "ViT-B-32"


def build(device: str) -> Any:
    """The ``ViT-B-32`` backbone with random weights (seed 0), frozen, eval mode."""
    return create_backbone(ARCH, device=device)


def merged_codyra(model: Any) -> Any:
    """A copy of ``model`` after a CoDyRA task with random adapters (1/3 of ranks pruned) merged."""
    merged = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    for name in prepare(merged, "both", TARGETS):
        layer = GatedLoRALinear(merged.get_submodule(name), 16, generator=g)
        with torch.no_grad():
            layer.lora_B.normal_(0, 0.01, generator=g)
            layer.gate[::3] = 0.0
        replace_module(merged, name, layer.merged())
    restore_attention(merged)
    return merged.eval()


def unmerged_peft(model: Any) -> Any:
    """A copy of ``model`` with peft LoRA (rank 16) on every target of both towers, not merged."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    adapted = copy.deepcopy(model)
    names = prepare(adapted, "both", TARGETS)
    LoraModel(adapted, LoraConfig(r=16, lora_alpha=16, target_modules=names), "default")
    for n, p in adapted.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, 0, 0.01)
    return adapted.eval()


def time_forwards(
    variants: dict[str, Any], images: torch.Tensor, reps: int
) -> dict[str, list[float]]:
    """Seconds of each ``encode_image(images)`` per variant, timed round-robin."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.no_grad():
        for model in variants.values():  # warm-up
            model.encode_image(images)
        for _ in range(reps):
            for name, model in variants.items():
                start = time.perf_counter()
                model.encode_image(images)
                times[name].append(time.perf_counter() - start)
    return times


class StepClock(Plugin):
    """Timestamps every training step (``after_batch``)."""

    name = "step-clock"

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def after_batch(self, loss: torch.Tensor, ctx: Context) -> None:
        self.stamps.append(time.perf_counter())


def _task_inputs(backbone: Any, batch: int, device: str, plugins: list) -> tuple:
    stream = streams.get("split-digits", n_tasks=1)
    g = torch.Generator().manual_seed(0)
    n = 4 * batch
    dataset = TensorDataset(torch.randn(n, 3, 224, 224, generator=g), torch.arange(n) % 10)
    data = TaskData(stream[0], torch.arange(n) % 10, dataset=dataset)
    ctx = Context(
        task_index=0, task=stream[0], stream=stream, label_space=stream.train_label_space(0),
        backbone=backbone, device=torch.device(device), seed=0,
        generator=torch.Generator().manual_seed(0), logger=logging.getLogger("bench"),
        record=lambda k, v: None, plugins=plugins, progress=False,
    )
    return data, ctx


def time_steps(backbone: Any, batch: int, steps: int, device: str) -> dict[str, float]:
    """Median seconds per training step of CoDyRA and plain LoRA (real ``train_task``)."""
    out = {}
    for label, cls in (("codyra", RankSelectiveLoRA), ("lora", LoRA)):
        clock = StepClock()
        data, ctx = _task_inputs(backbone, batch, device, [clock])
        strategy = cls(rank=16, iterations=steps, batch_size=batch, lr=1e-4)
        strategy.train_task(data, ctx)
        strategy.after_task(ctx)
        out[label] = statistics.median(b - a for a, b in zip(clock.stamps, clock.stamps[1:]))
    return out


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _memory_worker(kind: str, batch: int, device: str, queue: Any) -> None:
    torch.set_num_threads(1)
    import peft.tuners.lora  # noqa: F401  (imported before the baseline: its import alone is ~0.5 GB)

    backbone = build(device)
    model, tokenizer = backbone.model, backbone.tokenizer
    peak, stop = [_rss()], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss()
        threading.Thread(target=sample, daemon=True).start()
    if kind == "full fine-tuning":
        model.train().requires_grad_(True)
        opt = torch.optim.AdamW([p for p in model.parameters()], lr=1e-5)
        data, ctx = _task_inputs(backbone, batch, device, [])
        tokens = tokenizer(prompts(ctx.label_space)).to(device)
        for i in range(2):
            x = torch.stack([data.dataset[j][0] for j in range(batch)]).to(device)
            y = torch.arange(batch, device=device) % 10
            loss = clip_loss(model.encode_image(x, normalize=True),
                             model.encode_text(tokens, normalize=True), y, model.logit_scale.exp())
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        cls = RankSelectiveLoRA if kind == "codyra" else LoRA
        data, ctx = _task_inputs(backbone, batch, device, [])
        cls(rank=16, iterations=2, batch_size=batch, lr=1e-4).train_task(data, ctx)
    stop.set()
    time.sleep(0.01)
    if device.startswith("cuda"):
        queue.put((kind, torch.cuda.max_memory_allocated() - before))
    else:
        queue.put((kind, peak[0] - before))


def measure_memory(batch: int, device: str) -> dict[str, int]:
    """Peak memory growth over two training steps, one fresh process per variant."""
    ctx = mp.get_context("spawn")
    out = {}
    for kind in ("codyra", "lora", "full fine-tuning"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_worker, args=(kind, batch, device, queue))
        proc.start()
        name, value = queue.get()
        proc.join()
        out[name] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="images per forward")
    parser.add_argument("--reps", type=int, default=7, help="timed forwards per variant")
    parser.add_argument("--train-batch", type=int, default=8, help="images per training step")
    parser.add_argument("--steps", type=int, default=5, help="training steps per strategy")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-forward", action="store_true", help="skip the forward timing")
    parser.add_argument("--no-steps", action="store_true", help="skip the training-step timing")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory comparison")
    args = parser.parse_args()

    backbone = build(args.device)
    print(f"{ARCH}, random weights, 224 px, device {args.device}, "
          f"{torch.get_num_threads()} thread(s)")
    if not args.no_forward:
        model = backbone.model
        images = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        variants = {"base": model, "merged CoDyRA": merged_codyra(model),
                    "unmerged peft LoRA": unmerged_peft(model)}
        fwd = time_forwards(variants, images.to(args.device), args.reps)
        med = {k: statistics.median(v) for k, v in fwd.items()}
        best = {k: min(v) for k, v in fwd.items()}
        print(f"\nforward encode_image, batch {args.batch}, {args.reps} round-robin reps "
              "(median; min, the least disturbed by other load)")
        for name in fwd:
            print(f"  {name:<22} {med[name] * 1e3:9.1f} ms  ratio to base {med[name] / med['base']:.3f}"
                  f"   min {best[name] * 1e3:9.1f} ms  ratio {best[name] / best['base']:.3f}")
        print("  goal: merged / base <= 1.02")
        del variants

    if not args.no_steps:
        steps = time_steps(backbone, args.train_batch, args.steps, args.device)
        print(f"\ntraining step, batch {args.train_batch}, rank 16, both towers, median of "
              f"{args.steps - 1}")
        for name, sec in steps.items():
            print(f"  {name:<22} {sec:9.3f} s")
        print(f"  CoDyRA / LoRA step ratio {steps['codyra'] / steps['lora']:.3f}   (goal <= 1.3)")

    if not args.no_memory:
        mem = measure_memory(args.train_batch, args.device)
        print(f"\npeak memory growth over 2 training steps, batch {args.train_batch}")
        for name, value in mem.items():
            print(f"  {name:<22} {value / 2**20:9.1f} MiB   ratio to full fine-tuning "
                  f"{value / mem['full fine-tuning']:.3f}")


if __name__ == "__main__":
    main()
