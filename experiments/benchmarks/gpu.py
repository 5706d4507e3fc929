"""One prepared device benchmark: extraction, a training step of each family, the analytic solve.

Run it when a GPU is lent (``python experiments/benchmarks/gpu.py``; about two minutes on one
H100) and copy its output into docs/performance.md. On this CPU, ``--device cpu --quick``
runs the same code on the toy CLIP in seconds (tested), so the script is known to work
before device time is spent on it. Printed:

1. **extraction** — ``encode_images`` images/s (no grad, bf16 autocast on CUDA, channels-last
   where the tower is convolutional) at ``--batch``, against the model's FLOP limit:
   ``peak FLOP/s / FLOPs per image`` (FLOPs per image counted by
   ``torch.utils.flop_counter``; the peak from the device's datasheet for known GPUs, else
   measured with a large bf16/fp32 matrix product), i.e. the model FLOP utilisation.
   Also JPEG decode on the device (``torchvision.io.decode_jpeg``) against PIL decode +
   preprocessing, images/s.
2. **training step** of each family, through its real ``train_task``: the adapting base
   (``clip-finetune``), LoRA (``codyra``), image-text (``contrastive-ft``), optionally with
   ``torch.compile`` (``--compile``); seconds per step (median after the first two) and
   images/s.
3. **analytic head** — RanPAC's random projection and ridge solve (``n_components`` M,
   float64 numpy reference path) on random features of the model's width: seconds to fit
   ``--head-samples`` samples of 100 classes.

Usage::

    python experiments/benchmarks/gpu.py                         # CUDA, ViT-B-16, batch 256
    python experiments/benchmarks/gpu.py --device cpu --quick    # toy-clip, seconds
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

#: dense bf16 tensor-core peak FLOP/s from the vendors' datasheets (SXM parts)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Any, device: torch.device, reps: int) -> float:
    """Median seconds of ``fn()`` over ``reps`` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_flops(device: torch.device, quick: bool) -> tuple[float, str]:
    """The device's peak FLOP/s and where the figure comes from."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in PEAK_BF16.items():
            if key in name:
                return value, f"{name} datasheet, dense bf16"
    n = 512 if quick else 4096
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    sec = timed(lambda: a @ a, device, 3)
    return 2 * n**3 / sec, f"measured {n}x{n} {str(dtype).removeprefix('torch.')} matmul"


def extraction(backbone: Any, device: torch.device, batch: int, quick: bool) -> None:
    from cl.core.compute import flops_per_image
    from cl.runtime import accel

    size = accel.DeviceTransform(backbone.preprocess).crop[0]
    x = torch.randn(batch, 3, size, size, device=device)
    per_image = flops_per_image(backbone, x[0])
    if accel.channels_last(backbone.model, device):
        x = x.contiguous(memory_format=torch.channels_last)

    def encode() -> None:
        with torch.inference_mode(), accel.autocast(device):
            backbone.encode_images(x)

    rate = batch / timed(encode, device, 3 if quick else 10)
    peak, source = peak_flops(device, quick)
    limit = peak / per_image
    print(f"extraction: {rate:,.0f} images/s at batch {batch}; FLOP limit {limit:,.0f} images/s "
          f"({per_image / 1e9:.3g} GFLOPs/image, peak {peak / 1e12:.3g} TFLOP/s, {source}); "
          f"model FLOP utilisation {rate / limit:.1%}")
    jpeg_decode(backbone, device, 16 if quick else 256)


def jpeg_decode(backbone: Any, device: torch.device, n: int) -> None:
    from cl.runtime import accel

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(n):  # 500x375, ImageNet's median size
            img = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
            paths.append(f"{tmp}/{i}.jpg")
            img.resize((500, 375), Image.BICUBIC).save(paths[-1], quality=90)
        transform = accel.DeviceTransform(backbone.preprocess)
        on_device = n / timed(lambda: transform(accel.decode_jpegs(paths, device)), device, 3)

        def pil() -> None:
            for p in paths:
                with open(p, "rb") as fh:
                    backbone.preprocess(Image.open(io.BytesIO(fh.read())).convert("RGB"))

        on_cpu = n / timed(pil, torch.device("cpu"), 2)
    print(f"JPEG decode + preprocess: on {device.type} {on_device:,.0f} images/s; PIL, one CPU "
          f"worker {on_cpu:,.0f} images/s")


def training_steps(spec: str, device: torch.device, batch: int, steps: int, compile_: bool) -> None:
    import strategies
    import streams
    from cl.core.plugin import Plugin
    from cl.core.runner import Runner
    from cl.models.backbones import create_backbone

    class Clock(Plugin):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def after_batch(self, loss: torch.Tensor, ctx: Any) -> None:
            sync(device)
            self.stamps.append(time.perf_counter())

    families = {"adapting (clip-finetune)": ("clip-finetune", "toy-mtil", {"warmup": 1}),
                "LoRA (codyra)": ("codyra", "toy-mtil", {}),
                "image-text (contrastive-ft)": ("contrastive-ft", "toy-captions", {})}
    for label, (name, stream, extra) in families.items():
        options = {"iterations": steps, "batch_size": batch, **extra}
        if compile_ and name != "contrastive-ft":
            options["compile"] = True
        backbone = create_backbone(spec, device=device)
        strategy = strategies.get(name, **options)
        clock = Clock()
        with tempfile.TemporaryDirectory() as tmp:
            runner = Runner(streams.get(stream), strategy, backbone, out_dir=tmp, device=device,
                            progress=False, plugins=[clock])
            ctx = runner.context(0)
            data = runner.task_data(0)
            strategy.before_task(ctx)
            strategy.train_task(data, ctx)
        gaps = [b - a for a, b in zip(clock.stamps, clock.stamps[1:], strict=False)]
        sec = statistics.median(gaps[1:] or gaps)  # the first gap holds step 1's FLOP count
        print(f"training step, {label}: {sec:.4f} s at batch {batch}, {batch / sec:,.0f} "
              f"images/s{' (compiled)' if options.get('compile') else ''}")


def analytic_head(width: int, samples: int, components: int) -> None:
    from strategies.estimators.ranpac import RanPAC

    rng = np.random.default_rng(0)
    X = rng.standard_normal((samples, width)).astype(np.float32)
    y = np.arange(samples) % 100
    start = time.perf_counter()
    head = RanPAC(n_components=components).partial_fit(X, y, classes=np.arange(100))
    fit = time.perf_counter() - start
    start = time.perf_counter()
    head.predict(X[:256])
    print(f"analytic head (RanPAC, M={components}, {samples} samples of width {width}): fit "
          f"{fit:.2f} s, predict 256 in {time.perf_counter() - start:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true",
                        help="toy-clip, small batches, few steps (checks the script in seconds)")
    parser.add_argument("--backbone", help="backbone spec (default ViT-B-16, random weights)")
    parser.add_argument("--batch", type=int, help="extraction batch (default 256; quick 16)")
    parser.add_argument("--train-batch", type=int, help="training batch (default 64; quick 4)")
    parser.add_argument("--steps", type=int, help="training steps per family (default 8)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the image tower")
    args = parser.parse_args()
    from cl.models.backbones import create_backbone

    device = torch.device(args.device)
    spec = args.backbone or ("toy-clip" if args.quick else "ViT-B-16")
    batch = args.batch or (16 if args.quick else 256)
    train_batch = args.train_batch or (4 if args.quick else 64)
    steps = args.steps or (2 if args.quick else 8)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), backbone {spec}, torch {torch.__version__}")
    backbone = create_backbone(spec, device=device)
    extraction(backbone, device, batch, args.quick)
    training_steps(spec, device, train_batch, steps, args.compile)
    width = backbone.embed_dim or 512
    analytic_head(width, 500 if args.quick else 20_000, 200 if args.quick else 10_000)


if __name__ == "__main__":
    main()
