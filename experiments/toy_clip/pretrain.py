"""Pretrain ``toy-clip``: a tiny open_clip CLIP trained contrastively on the held-in toy world.

The recipe behind ``cl/models/pretrained/toy-clip.safetensors``. Run from the repository root::

    python experiments/toy_clip/pretrain.py            # writes cl/models/pretrained/toy-clip.*

Model: the open_clip config ``cl/models/model_configs/toy-clip.json`` (ViT on 32×32 images,
text transformer with open_clip's tokenizer), initialised by open_clip under
``torch.manual_seed(SEED)``.

Data: every step draws ``BATCH`` fresh scenes from the *held-in* world
(:mod:`streams.toyworld.attributes`: no held-out colour, shape or digit, no
held-out (colour, shape) pair; half the scenes hold one object, the rest 2-4),
renders them from the training glyph pool and gives each one random partial
caption (each part mentioned with probability ``MENTION``), all from
``numpy.random.default_rng([SEED, step])``.

Objective: CLIP's symmetric InfoNCE, ``open_clip.loss.ClipLoss`` (Radford et
al. 2021, Sec. 2.3), with a learned temperature clamped at 100 as open_clip's
trainer does. AdamW (β = (0.9, 0.98), ε = 1e-6, weight decay on matrices only:
open_clip's ``exclude`` rule for gains, biases and ``logit_scale``), linear
warm-up then cosine decay (open_clip's ``cosine_lr``).

Output: fp16 safetensors (metadata ``open_clip_model``) and ``toy-clip.json``
beside it: the recipe hash (SHA-256 over :data:`RECIPE_FILES`, see
:func:`recipe_hash`), the seed, the file's SHA-256 and size, the settings, the
wall time and the zero-shot accuracy of the saved weights on every domain of
the world, measured through ``cl``'s own backbone path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SEED = 0
STEPS = 2500
BATCH = 128
LR = 1e-3
WARMUP = 100
WEIGHT_DECAY = 0.1
BETAS = (0.9, 0.98)
EPS = 1e-6
#: probability that a caption mentions each part (the object most often: shapes and digits are
#: the slowest concepts for a ViT trained from scratch)
MENTION = {"object": 0.9, "count": 0.5, "colour": 0.5, "texture": 0.5, "position": 0.5,
           "background": 0.5}
SINGLE_OBJECT_SHARE = 0.5
ONE_PART_BATCHES = 0.0
EVAL_PER_CLASS = 50
#: files whose content determines the weights, hashed in this order (paths from the repo root)
RECIPE_FILES: tuple[str, ...] = (
    "experiments/toy_clip/pretrain.py",
    "cl/models/model_configs/toy-clip.json",
    "streams/toyworld/attributes.py",
    "streams/toyworld/render.py",
    "streams/toyworld/captions.py",
)


def recipe_hash(root: Path = ROOT) -> str:
    """SHA-256 over :data:`RECIPE_FILES`: for each, its path, a NUL, its bytes, a NUL."""
    h = hashlib.sha256()
    for name in RECIPE_FILES:
        h.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


class PretrainingBatches(Dataset):
    """Batch ``i`` of the recipe: images (BATCH, 3, 32, 32) and tokens (BATCH, context).

    Step ``i`` draws from ``default_rng([SEED, i])`` only, so batches are the same in
    any process (the training loop reads them from a ``DataLoader`` worker). Pixels are
    normalised with the model's mean and std, which on 32×32 images equals the
    model's evaluation transform exactly (Resize and CenterCrop are identities).
    """

    def __init__(self, steps: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        import open_clip

        self.steps = steps
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.tokenizer = open_clip.get_tokenizer("toy-clip")

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        from streams.toyworld.attributes import (
            BACKGROUNDS,
            HELD_IN_OBJECTS,
            HELD_OUT_COMBINATIONS,
            POSITIONS,
            PREFIXES,
            TEXTURES,
            held_in,
        )
        from streams.toyworld.captions import PARTS, describe, random_caption
        from streams.toyworld.render import random_scene, render

        rng = np.random.default_rng([SEED, step])
        part = PARTS[int(rng.integers(len(PARTS)))] if rng.random() < ONE_PART_BATCHES else None
        objects = held_in("shape") if part == "texture" else HELD_IN_OBJECTS
        pixels, texts = [], []
        for _ in range(BATCH):
            if part == "count":
                counts: tuple[int, ...] = (1, 2, 3, 4)
            elif part == "position" or rng.random() < SINGLE_OBJECT_SHARE:
                counts = (1,)
            else:
                counts = (2, 3, 4)
            scene = random_scene(rng, objects=objects, colours=held_in("colour"),
                                 textures=TEXTURES, counts=counts, positions=tuple(POSITIONS),
                                 backgrounds=BACKGROUNDS, exclude=HELD_OUT_COMBINATIONS)
            pixels.append(render(scene, glyphs="train"))
            texts.append(random_caption(scene, rng, mention=MENTION) if part is None else
                         describe(scene, {part}, PREFIXES[int(rng.integers(len(PREFIXES)))]))
        images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float().div_(255.0)
        return (images - self.mean) / self.std, self.tokenizer(texts)


def learning_rate(step: int, steps: int) -> float:
    """Linear warm-up to ``LR`` over ``WARMUP`` steps, then cosine decay to 0 at ``steps``
    (open_clip's ``cosine_lr``)."""
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    return 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / max(steps - WARMUP, 1))) * LR


def train(steps: int, log_every: int, curve_every: int) -> tuple[torch.nn.Module, dict]:
    """The pretrained model (fp32) and training figures (loss, zero-shot learning curve)."""
    import open_clip
    from torch.utils.data import DataLoader

    from cl.models.weights import register_model_configs

    register_model_configs()
    torch.manual_seed(SEED)
    model = open_clip.create_model("toy-clip", pretrained_text=False)
    model.token_embedding.requires_grad_(False)  # every word keeps its random vector
    cfg = model.visual.preprocess_cfg
    batches = DataLoader(PretrainingBatches(steps, cfg["mean"], cfg["std"]), batch_size=None,
                         num_workers=1, prefetch_factor=4)
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    trained_names = {n for n, _ in trained}
    decay = [p for n, p in trained if p.ndim >= 2 and "logit_scale" not in n]
    rest = [p for n, p in trained if not (p.ndim >= 2 and "logit_scale" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": rest, "weight_decay": 0.0}], lr=LR, betas=BETAS, eps=EPS)
    loss_fn = open_clip.loss.ClipLoss()
    model.train()
    start, losses, curve, curve_seconds = time.perf_counter(), [], {}, 0.0
    for step, (images, tokens) in enumerate(batches):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, steps)
        image, text, scale = model(images, tokens)[:3]
        loss = loss_fn(image, text, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps}  loss {np.mean(losses[-log_every:]):.3f}  "
                  f"scale {model.logit_scale.exp().item():.1f}  "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        if curve_every and (step + 1) % curve_every == 0 and step + 1 < steps:
            tick = time.perf_counter()
            curve[step + 1] = zero_shot_curve_point(model)
            curve_seconds += time.perf_counter() - tick
            print(f"  zero-shot {curve[step + 1]}", flush=True)
            model.train()
            for name, param in model.named_parameters():
                param.requires_grad_(name in trained_names)
    model.eval()
    total = time.perf_counter() - start
    return model, {"seconds": round(total - curve_seconds, 1),
                   "learning_curve_seconds": round(curve_seconds, 1),
                   "final_loss": round(float(np.mean(losses[-50:])), 4), "curve": curve}


def zero_shot_curve_point(model: torch.nn.Module) -> dict[str, float]:
    """Zero-shot accuracy of the model being trained on every domain, 20 test images per class
    (leaves the model in eval mode without gradients)."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from cl.models.backbones import OpenCLIPBackbone
    from strategies.plugins.retention import zero_shot_accuracy
    from streams.benchmarks.toy import toy_mtil
    from streams.toyworld.attributes import DOMAINS

    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    backbone = OpenCLIPBackbone("toy-clip", "toy-clip", model, open_clip.get_tokenizer("toy-clip"),
                                preprocess)
    stream = toy_mtil(domains=list(DOMAINS), n_train=1, n_test=20)
    return {t.name: round(zero_shot_accuracy(backbone, t), 3) for t in stream}


def save(model: torch.nn.Module, path: Path) -> None:
    """fp16 safetensors of the model's state dict, with its architecture in the metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt", "open_clip_model": "toy-clip"})


def combination_probe(backbone, held_out: bool) -> float:
    """Zero-shot accuracy of naming colour and shape together (36-way, 'a photo of a red
    circle.') on 200 single-object scenes of held-out, or of held-in, (colour, shape) pairs."""
    from strategies.plugins.retention import zero_shot_accuracy
    from streams.core import Task
    from streams.toyworld.attributes import (
        BACKGROUNDS,
        HELD_OUT_COMBINATIONS,
        POSITIONS,
        PREFIXES,
        TEXTURES,
        held_in,
    )
    from streams.toyworld.dataset import SceneDataset
    from streams.toyworld.render import random_scene

    names = [f"{c} {s}" for c in held_in("colour") for s in held_in("shape")]
    pairs = [p for p in ((c, s) for c in held_in("colour") for s in held_in("shape"))
             if (p in HELD_OUT_COMBINATIONS) == held_out]
    rng = np.random.default_rng([SEED, 7, held_out])
    scenes, labels = [], []
    for i in range(200):
        c, s = pairs[i % len(pairs)]
        scenes.append(random_scene(rng, objects=(s,), colours=(c,), textures=TEXTURES,
                                   counts=(1,), positions=tuple(POSITIONS),
                                   backgrounds=BACKGROUNDS))
        labels.append(names.index(f"{c} {s}"))
    data = SceneDataset(scenes, labels, glyphs="test")
    task = Task("combinations", tuple(names), lambda: data, lambda: data,
                templates=tuple(f"{p} a {{}}." for p in PREFIXES))
    return zero_shot_accuracy(backbone, task)


def evaluate(path: Path) -> dict[str, dict[str, float]]:
    """Zero-shot accuracy of the saved weights (loaded as ``toy-clip:PATH``) on every domain."""
    from cl.models.backbones import create_backbone
    from strategies.plugins.retention import zero_shot_accuracy
    from streams.benchmarks.toy import toy_mtil
    from streams.toyworld.attributes import DOMAINS

    backbone = create_backbone(f"toy-clip:{path}")
    stream = toy_mtil(domains=list(DOMAINS), n_test=EVAL_PER_CLASS)
    return {
        "zero_shot": {t.name: round(zero_shot_accuracy(backbone, t), 4) for t in stream},
        "chance": {t.name: round(1 / t.n_classes, 4) for t in stream},
        "colour_shape_pairs": {
            "held_in": round(combination_probe(backbone, held_out=False), 4),
            "held_out": round(combination_probe(backbone, held_out=True), 4),
            "chance": round(1 / 36, 4),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "cl" / "models" / "pretrained",
                        help="output folder (default cl/models/pretrained)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: fastest on a shared machine)")
    parser.add_argument("--steps", type=int, default=STEPS,
                        help=f"training steps (the shipped weights: {STEPS})")
    parser.add_argument("--curve-every", type=int, default=250,
                        help="steps between zero-shot measurements of the learning curve (0: none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    weights, manifest = args.out / "toy-clip.safetensors", args.out / "toy-clip.json"
    model, figures = train(args.steps, log_every=50, curve_every=args.curve_every)
    save(model, weights)
    import open_clip

    record = {
        "model": "toy-clip",
        "file": weights.name,
        "sha256": file_sha256(weights),
        "bytes": weights.stat().st_size,
        "dtype": "float16",
        "seed": SEED,
        "recipe_sha256": recipe_hash(),
        "recipe_files": list(RECIPE_FILES),
        "recipe": {"steps": args.steps, "batch": BATCH, "lr": LR, "warmup": WARMUP,
                   "weight_decay": WEIGHT_DECAY, "betas": list(BETAS), "eps": EPS,
                   "mention": MENTION, "one_part_batches": ONE_PART_BATCHES,
                   "single_object_share": SINGLE_OBJECT_SHARE},
        "pretraining": figures | {"threads": args.threads, "torch": torch.__version__,
                                  "open_clip": open_clip.__version__,
                                  "images_seen": args.steps * BATCH},
        **evaluate(weights),
    }
    manifest.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("zero_shot", "colour_shape_pairs")}, indent=2))
    print(f"wrote {weights} ({record['bytes'] / 1e6:.2f} MB) and {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
