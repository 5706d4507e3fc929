"""Feature extraction: library overhead and the on-disk cache, side by side in one run.

(a) Throughput of ``cl.models.features.extract`` (cache off) against a bare
    ``model.encode_image`` loop over the same preprocessed tensors, same batch
    size, same autocast. Goal: ratio >= 0.9 (the library adds almost nothing).
(b) Wall time of the same experiment run twice through one cache directory:
    ``Runner`` with the ``zeroshot`` strategy over a generated two-task stream
    of PIL images (every split encoded in the first run, loaded in the second).
    The backbone is built once beforehand; its build time is printed apart.
    Goal: second run >= 20x faster.

Usage (random ViT-B-32 weights at 224 px; no download)::

    OMP_NUM_THREADS=1 python experiments/benchmarks/bench_features.py
    python experiments/benchmarks/bench_features.py --model ViT-B-16 --device cuda --images 2048
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

import cl.core.runner
import strategies
from cl.core.runner import Runner
from cl.models.backbones import OpenCLIPBackbone, create_backbone
from cl.models.features import autocast_for, extract
from cl.models.prompts import clear_head_cache
from streams.core import Stream, Task


class TensorPairs(Dataset):
    """Already-preprocessed images (N, 3, H, W) with labels."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], 0


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def block_image(seed: int, size: int = 256) -> Image.Image:
    """One RGB image (size x size): random 8x8 colour blocks plus noise."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    big = np.kron(blocks, np.ones((size // 8, size // 8, 1), dtype=np.uint8)).astype(np.int16)
    return Image.fromarray(np.clip(big + rng.integers(-20, 21, big.shape), 0, 255).astype(np.uint8))


class BlockImages(Dataset):
    """``n`` generated images made on access (cheap to build, like a folder dataset)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return block_image(self.seed * 1_000_003 + i), i % 2


def bare_loop(backbone: OpenCLIPBackbone, x: torch.Tensor, batch_size: int,
              device: torch.device) -> torch.Tensor:
    """The reference: the model's own forward over ready tensors."""
    out = []
    with torch.inference_mode(), autocast_for(device):
        for i in range(0, x.shape[0], batch_size):
            batch = x[i : i + batch_size].to(device, non_blocking=True)
            out.append(backbone.model.encode_image(batch, normalize=True).float().cpu())
    return torch.cat(out)


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def throughput(backbone: OpenCLIPBackbone, n: int, batch_size: int, device: torch.device,
               repeats: int) -> tuple[float, float]:
    """(bare img/s, extract img/s), best of ``repeats`` interleaved runs after a warm-up."""
    pil = BlockImages(n, seed=1)
    x = torch.stack([backbone.preprocess(pil[i][0]) for i in range(n)])
    ready = copy.copy(backbone)  # same model, identity preprocessing: tensors are ready
    ready.preprocess = _identity
    data = TensorPairs(x)

    def lib() -> None:
        extract(ready, data, key="bench/ready", split="train", batch_size=batch_size,
                device=device, progress=False, use_cache=False)

    bare_loop(backbone, x[:batch_size], batch_size, device)  # warm-up
    bare_t, lib_t = [], []
    for _ in range(repeats):
        bare_t.append(timed(lambda: bare_loop(backbone, x, batch_size, device), device))
        lib_t.append(timed(lib, device))
    return n / min(bare_t), n / min(lib_t)


def generated_stream(n_train: int, n_test: int) -> Stream:
    tasks = []
    for t in range(2):
        def load(split: str, t: int = t) -> BlockImages:
            return BlockImages(n_train if split == "train" else n_test, 10 * t + (split == "test"))

        tasks.append(Task(
            name=f"blocks-{t}", class_names=(f"pattern {2 * t}", f"pattern {2 * t + 1}"),
            load_train=lambda load=load: load("train"), load_test=lambda load=load: load("test"),
            key=f"bench-blocks(n_train={n_train},n_test={n_test})/task{t}",
            templates=("a photo of a {}.", "a picture of a {}."),
        ))
    return Stream("bench-blocks", tuple(tasks), "class-incremental")


def cached_runs(backbone: OpenCLIPBackbone, stream: Stream, batch_size: int, device: torch.device,
                root: Path) -> list[tuple[float, float]]:
    """(wall time, time inside ``extract``) of the same Runner experiment run twice."""
    spent = [0.0]

    def timed_extract(*args, **kwargs):
        start = time.perf_counter()
        try:
            return extract(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    cl.core.runner.extract = timed_extract  # the runner's own call, timed
    times = []
    for i in range(2):
        clear_head_cache()  # as in a fresh process: only the on-disk cache carries over
        spent[0] = 0.0
        runner = Runner(stream, strategies.get("zeroshot"), backbone, out_dir=root / f"run{i}",
                        device=device, batch_size=batch_size, cache_dir=str(root / "cache"),
                        progress=False)
        times.append((timed(runner.run, device), spent[0]))
    cl.core.runner.extract = extract
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ViT-B-32", help="open_clip spec (random init if no tag)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=192, help="images for throughput (a)")
    p.add_argument("--train", type=int, default=96, help="train images per task for (b)")
    p.add_argument("--test", type=int, default=48, help="test images per task for (b)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    device = torch.device(args.device)

    import open_clip  # noqa: F401  (import time is not build time)

    start = time.perf_counter()
    backbone = create_backbone(args.model, device=device)
    build = time.perf_counter() - start
    if not isinstance(backbone, OpenCLIPBackbone):
        raise SystemExit(f"--model must be an open_clip spec, got {args.model!r}.")
    size = backbone.model.visual.image_size
    print(f"{args.model} ({size} px) on {device}, torch threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}; backbone build + fingerprint {build:.1f} s")

    bare, lib = throughput(backbone, args.images, args.batch_size, device, args.repeats)
    print(f"(a) throughput over {args.images} preprocessed images (best of {args.repeats}):")
    print(f"    bare model.encode_image loop   {bare:8.1f} img/s")
    print(f"    cl.models.features.extract (no cache) {lib:8.1f} img/s")
    print(f"    ratio extract / bare           {lib / bare:8.3f}   (goal >= 0.9)")

    stream = generated_stream(args.train, args.test)
    n = 2 * (args.train + args.test)
    with tempfile.TemporaryDirectory() as tmp:
        (first, first_x), (second, second_x) = cached_runs(backbone, stream, args.batch_size,
                                                           device, Path(tmp))
    print(f"(b) zeroshot Runner over a generated 2-task stream, {n} PIL images, one cache dir:")
    print(f"    first run (encodes every split)  {first:8.2f} s  (extract: {first_x:.2f} s)")
    print(f"    second run (feature cache)       {second:8.2f} s  (extract: {second_x:.2f} s)")
    print(f"    speed-up first / second          {first / second:8.1f}x  (goal >= 20x)")
    print(f"    with a fresh backbone build each run: {(first + build) / (second + build):.1f}x")


if __name__ == "__main__":
    main()
