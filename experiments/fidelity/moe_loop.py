"""MoE-Adapters' training loop over tasks, step by step: experts, per-task routers, activate-freeze.

Reference executed (``JiazuoYu/MoE-Adapters4CL`` ``mtil/``): ``src/models/finetune.py``
``finetune(args)``, ast-extracted and run whole per task: loading (``--load --repeat_train``),
parameter selection (``--train-mode adapter``, minus ``--frozen``'s list), ``AdamW``,
``utils.cosine_lr``, the ``range(total_iterations + 1)`` loop, the top-2 activation counts per
block appended to the frozen list, the checkpoint. ``args`` comes from its own ``parse_arguments``
on the command lines of ``scripts/train/train_full_shot_router11_experts22_1000iters.sh`` (later
tasks add ``--load --repeat_train --frozen``) with the small values below and ``--loss-interval
1`` (every step's printed loss is read back). Its model: ``clip/model.py`` ``build_model``,
``CLIP``, ``VisualTransformer``, ``Transformer``, ``ResidualAttentionBlock``, ``SparseDispatcher``
and ``clip/adapter.py`` ``Adapter``, ast-extracted. Source replacements:

* ``finetune.py``: ``.cuda()`` deleted; ``range(12)`` (ViT-B/16's blocks per tower) →
  ``range(2)``, ``cl-tiny-vit``'s (toy-clip's towers have unequal depths);
* ``model.py``: ``// 64`` (head width) → ``// 32`` (``cl-tiny-vit``'s);
  ``torch.randn_like(clean_logits)`` (routing noise from the global generator) → the draws our
  routers made, block by block in order; the reference's extra step T draws from a seeded
  generator (ours has no step T).

The experts' dropout (the reference's literal 0.1, our default) draws from torch's global
generator on both sides, seeded alike before each task's first step; the reference's
``SparseDispatcher`` is subclassed to count dispatches whose unstable sort hands an expert its
samples in another order than ours (the masks would then land on other samples).

Stand-ins: ``clip.load`` returns ``build_model`` on ``cl-tiny-vit``'s state dict (every backbone
weight checked equal) with our initial experts, in float64, with the backbone's ``LayerNorm`` and
``GELU`` for its ``LayerNorm`` (a float32 cast) and ``QuickGELU`` (OpenAI's weights'); its
routers stay float32, as ours (the reference is float32 throughout). ``clip.tokenize`` is the
backbone's tokenizer; ``datasets.<name>`` yields epoch by epoch the batches our strategy drew
(plus one for step T). Before the reference writes its frozen list after its step T (lr 0), its
activation counts are restored to those after step T−1 (ours counts T batches, a stated
deviation); the list with step T counted is written by the same block and reported apart.

Ours: ``moe-adapters`` driven by the runner's calls on ``toy-mtil`` (2 tasks), ``cl-tiny-vit``
in float64, ``noisy_top_k_gating`` wrapped to record the noise. On both
sides torch's global optimiser hooks record each step's learning rates, settings, parameters
with a gradient and every expert and router weight after the step.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from pathlib import Path
from typing import Any

import common

NAME = "moe-loop"
DESCRIPTION = ("MoE-Adapters training loop over 2 tasks (experts, per-task routers, "
               "activate-freeze), step by step, vs its `finetune(args)`")
MOE = common.Git("JiazuoYu/MoE-Adapters4CL", "4572d97d28d3a7b45e8808bee1d3c64263f425f2")
REFERENCES = (MOE,)

STEPS, WARMUP, BATCH = 4, 2, 4  # T, warm-up, batch
LRS = (5e-3, 1e-3)  # per task
EXPERTS, LAYERS = 22, 2  # the script's experts; cl-tiny-vit's blocks per tower
SEED = 1000  # of the global generator before each task's training (the experts' dropout)
DOMAINS, IMAGES = ["backgrounds", "positions"], 3


def _loops():
    """The ``adaptation-loops`` group module (its optimiser hooks, batch recording, datasets)."""
    name = "fidelity_group_adaptation_loops"
    if name in sys.modules:
        return sys.modules[name]
    return common.import_file(Path(__file__).with_name("adaptation_loops.py"), name)


def _ref_name(name: str) -> str:
    """Our parameter name → the reference's (``.block.`` wrapper dropped, MoE names mapped)."""
    name = name.replace(".block.", ".", 1)
    return re.sub(r"\.moe\.(experts|gates|noise)\.",
                  lambda m: {"experts": ".adaptmlp_list.", "gates": ".router_list.",
                             "noise": ".w_noise_list."}[m.group(1)], name)


def _is_moe(name: str) -> bool:
    """The reference's selection of MoE parameters (``finetune.py``, ``--train-mode adapter``)."""
    return "adaptmlp" in name or "router" in name or "noise" in name


def _steps_class():
    """``adaptation-loops``' step recorder, also recording which parameters have a gradient."""
    loops = _loops()

    class Steps(loops._Steps):
        def __init__(self, names, after=None) -> None:
            super().__init__(names, after)
            self.trained: list[set[str]] = []

        def _pre(self, opt, args, kwargs) -> None:
            super()._pre(opt, args, kwargs)
            self.trained.append({n for named in self._named(opt) for n, p in named
                                 if p.grad is not None})

    return Steps


def _moe_weights(model, rename=lambda n: n) -> dict[str, Any]:
    """Every expert and router weight of ``model``, by the reference's names."""
    return {rename(n): p.detach().clone() for n, p in model.named_parameters()
            if _is_moe(rename(n))}


def _ours(stream, pristine, tmp: Path) -> list[dict]:
    """Our moe-adapters over the stream; per task what the loop did (names the reference's)."""
    import copy

    import torch

    import strategies
    import strategies.adaptation.moe as moe_module
    from cl.core.runner import Runner
    from strategies.adaptation.moe_blocks import moe_blocks

    backbone = copy.deepcopy(pristine)
    strategy = strategies.get("moe-adapters", iterations=STEPS, batch_size=BATCH, warmup=WARMUP,
                              lr_per_task=LRS, experts=EXPERTS, ddas_iterations=1)
    seen: list = []
    _loops()._recording_cycle(strategy, seen)
    losses: list[float] = []
    task_loss = strategy._task_loss

    def recording_loss(*args):
        value = task_loss(*args)
        losses.append(float(value.detach()))
        return value

    strategy._task_loss = recording_loss
    runner = Runner(stream, strategy, backbone, out_dir=tmp / "ours", progress=False)
    model = backbone.model
    draws: dict[str, list] = {}
    block_of: dict[int, str] = {}
    gating = moe_module.noisy_top_k_gating

    def recording_gating(x, w_gate, w_noise, *, noise, **kw):
        if noise is not None:
            draws.setdefault(block_of[id(w_gate)], []).append(noise.clone())
        return gating(x, w_gate, w_noise, noise=noise, **kw)

    tasks = []
    moe_module.noisy_top_k_gating = recording_gating
    try:
        for t in range(len(stream)):
            ctx = runner.context(t)
            strategy.before_task(ctx)
            names = {id(p): _ref_name(n) for n, p in model.named_parameters()}
            block_of.update({id(g): name for name, b in moe_blocks(model) for g in b.moe.gates})
            start = _moe_weights(model, _ref_name)
            draws.clear()
            del losses[:]
            snapshots: list[dict] = []
            first = len(seen)
            data = runner.task_data(t)
            torch.manual_seed(SEED + t)  # the experts' dropout draws from the global generator
            with _steps_class()(names, lambda i, w, into=snapshots: into.append(
                    _moe_weights(model, _ref_name))) as steps:
                strategy.train_task(data, ctx)
            counts = {name: b.moe.activations.clone() for name, b in moe_blocks(model)}
            strategy.after_task(ctx)
            frozen = {f"{name}.adaptmlp_list.{e}.{p}" for name, b in moe_blocks(model)
                      for e in b.moe.frozen.nonzero().flatten().tolist()
                      for p in ("down_proj.weight", "down_proj.bias", "up_proj.weight",
                                "up_proj.bias")}
            records = seen[first:]
            for r in records:  # the batch of the reference's extra step T
                r["batches"].append(next(r["source"]))
            tasks.append({"index": t, "dropout": strategy.options.expert_dropout, "start": start,
                          "lrs": steps.lrs, "groups": steps.groups, "trained": steps.trained,
                          "snapshots": snapshots, "counts": counts, "frozen": frozen,
                          "losses": list(losses), "records": records,
                          "draws": {k: list(v) for k, v in draws.items()}})
    finally:
        moe_module.noisy_top_k_gating = gating
    return tasks


def _reference_model(mtil: Path, pristine, queue: dict[str, list], stats: dict[str, int]):
    """``build_model`` of the reference's ``clip/model.py`` (see the module docstring); ``stats``
    counts its step-T noise draws (``extra``), its dispatches and those whose samples per expert
    are not in increasing order, as ours (``reordered``: dropout masks would then differ)."""
    from collections import Counter, OrderedDict
    from typing import Union

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.distributions.normal import Normal

    block = pristine.model.visual.transformer.resblocks[0]
    spare = torch.Generator().manual_seed(1)

    def noise(me, like):
        tower = "visual.transformer" if me.text_or_image == "image" else "transformer"
        pending = queue.get(f"{tower}.resblocks.{me.layer}")
        if pending:
            draw = pending.pop(0)
            if draw.shape != like.shape:
                raise AssertionError(f"noise of shape {tuple(draw.shape)} for {tuple(like.shape)}")
            return draw.to(like)
        stats["extra"] += 1  # the reference's step T
        return torch.randn(like.shape, generator=spare, dtype=like.dtype)

    adapter = common.load_source(mtil / "clip" / "adapter.py", ["Adapter"],
                                 namespace={"torch": torch, "nn": nn, "math": __import__("math")})
    namespace = {"torch": torch, "nn": nn, "F": F, "np": np, "OrderedDict": OrderedDict,
                 "Counter": Counter, "Normal": Normal, "Tuple": tuple, "Union": Union,
                 "Adapter": adapter.Adapter, "LayerNorm": type(block.ln_1),
                 "QuickGELU": type(block.mlp.gelu), "_noise": noise}
    ref = common.load_source(
        mtil / "clip" / "model.py",
        ["val_task_id", "SparseDispatcher", "ModifiedResNet", "ResidualAttentionBlock",
         "Transformer", "VisualTransformer", "CLIP", "build_model"],
        replace={"// 64": "// 32", "torch.randn_like(clean_logits)": "_noise(self, clean_logits)"},
        namespace=namespace)

    class Dispatcher(ref.SparseDispatcher):
        def __init__(self, num_experts, gates):
            super().__init__(num_experts, gates)
            per_expert = self._batch_index.flatten().split(self._part_sizes)
            stats["dispatches"] += 1
            stats["reordered"] += int(any(bool((b.diff() < 0).any()) for b in per_expert))

    namespace["SparseDispatcher"] = Dispatcher
    return ref


def _parse_args(mtil: Path, t: int, save: Path, frozen: Path, previous: str | None):
    """``args`` of task ``t`` from the reference's own parser (the script's command lines)."""
    import torch

    parse = common.load_source(mtil / "src" / "args.py", ["parse_arguments"],
                               namespace={"argparse": __import__("argparse"), "torch": torch})
    argv = ["--train-mode=adapter", f"--train-dataset=Task{t}", f"--lr={LRS[t]}", "--ls", "0.2",
            "--iterations", str(STEPS), "--method", "finetune", "--save", str(save),
            "--ffn_adapt_where", "AdapterDoubleEncoder", "--ffn_adapt", "--task_id", str(t),
            "--multi_experts", "--apply_moe", "--frozen-path", str(frozen), "--experts_num",
            str(EXPERTS), "--is_train", "--batch-size", str(BATCH), "--warmup_length",
            str(WARMUP), "--loss-interval", "1"]
    if previous is not None:
        argv += ["--load", previous, "--repeat_train", "--frozen"]
    saved, sys.argv = sys.argv, ["main.py", *argv]
    try:
        return parse.parse_arguments()
    finally:
        sys.argv = saved


def _reference(mtil: Path, stream, pristine, ours: list[dict], tmp: Path) -> dict[str, Any]:
    """The reference's ``finetune(args)`` per task on our batches and noise; compared as it runs."""
    import copy
    import io
    import os
    from types import SimpleNamespace

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    loops = _loops()
    utils = common.import_file(mtil / "src" / "utils.py", "fidelity_ref_moe_loop_utils")
    queue: dict[str, list] = {}
    stats = {"extra": 0, "dispatches": 0, "reordered": 0}
    ref = _reference_model(mtil, pristine, queue, stats)
    backbone = {k: v for k, v in pristine.model.state_dict().items() if k != "attn_mask"}
    models: list = []
    names: dict[int, str] = {}

    def load(model_name, jit=False, args=None):
        model = ref.build_model({k: v.clone() for k, v in backbone.items()}, args=args).double()
        state = model.state_dict()
        off = [k for k, v in backbone.items() if k not in state or not torch.equal(state[k], v)]
        if off:
            raise AssertionError(f"backbone weights not carried over: {off[:4]}")
        with torch.no_grad():
            for k, v in ours[0]["start"].items():
                if "adaptmlp" in k:  # our initial experts
                    model.get_parameter(k).copy_(v)
        for k, p in model.named_parameters():
            if "router_list" in k or "w_noise_list" in k:
                p.data = p.data.float()  # as ours (see the module docstring)
        models.append(model)
        torch.manual_seed(SEED + len(models) - 1)  # as ours: the dropout draws
        names.update({id(p): n for n, p in model.named_parameters()})
        return model, pristine.preprocess, pristine.preprocess

    def never(*a, **k):
        raise AssertionError("the reference reached a function this comparison does not set up")

    out: dict[str, Any] = {"lrs": (0.0, 0.0), "last_lr": 0.0, "groups": 0, "trained": 0,
                           "n_trained": set(), "loss": (0.0, 0.0), "steps": (0.0, 0.0),
                           "counts": 0.0, "frozen": 0, "n_frozen": [], "extra_counts": 0.0,
                           "extra_frozen": 0, "final": (0.0, 0.0), "count": 0, "draws": 0,
                           "by_task": [0.0] * len(ours)}
    save, frozen_path = tmp / "ref", tmp / "frozen_list"
    previous = None
    for t, task in enumerate(ours):
        queue.clear()
        queue.update({k: list(v) for k, v in task["draws"].items()})
        out["draws"] += sum(len(v) for v in queue.values())
        stats["extra"] = 0
        namespace = {"copy": copy, "os": os, "np": np, "torch": torch, "F": F,
                     "DataLoader": DataLoader, "tqdm": lambda it, **k: it,
                     "clip": SimpleNamespace(load=load, tokenize=pristine.tokenizer),
                     "datasets": loops._datasets(stream, t, f"Task{t}", task["records"]),
                     "templates": None, "utils": utils, "evaluate": never}
        finetune = common.load_source(
            mtil / "src" / "models" / "finetune.py", ["finetune"],
            replace={".cuda()": "", "range(12)": f"range({LAYERS})"},
            namespace=namespace).finetune
        args = _parse_args(mtil, t, save, frozen_path, previous)
        compare = _comparer(mtil, task, models, out, tmp / f"task{t}")
        printed = io.StringIO()
        with _steps_class()(names, compare) as steps, contextlib.redirect_stdout(printed):
            finetune(args)
        if len(steps.lrs) != STEPS + 1:
            raise AssertionError(f"the reference ran {len(steps.lrs)} steps, not T + 1")
        if any(queue.values()):
            raise AssertionError("the reference used fewer routing draws than ours")
        if stats["extra"] != 2 * LAYERS:  # one draw per block at step T
            raise AssertionError(f"the reference drew {stats['extra']} extra routing noises, "
                                 f"not {2 * LAYERS}")
        out["lrs"] = loops._worst(out["lrs"], common.max_diff(
            [g[0] for g in task["lrs"]], [g[0] for g in steps.lrs[:STEPS]]))
        out["last_lr"] = max(out["last_lr"], abs(steps.lrs[STEPS][0]))
        out["groups"] += loops._group_mismatches(*(  # settings only: the reference's group
            [{k: v for k, v in g.items() if k != "names"} for g in groups]  # holds all routers
            for groups in (task["groups"], steps.groups)))
        out["trained"] += sum(len(a ^ b) for a, b in zip(task["trained"], steps.trained))
        out["n_trained"] |= {len(trained) for trained in steps.trained[:STEPS]}
        losses = [float(line.split()[1]) for line in printed.getvalue().splitlines()
                  if line.startswith("Loss:")]
        out["loss"] = loops._worst(out["loss"], common.max_diff(task["losses"], losses[:STEPS]))
        written = set(frozen_path.read_text().splitlines())
        out["frozen"] += len(written ^ task["frozen"])
        out["n_frozen"].append(len(written) // 4)
        previous = str(save / f"Task{t}.pth")
        saved = torch.load(previous)["state_dict"]
        final = task["snapshots"][-1]
        out["final"] = loops._worst(out["final"], loops._all_weights_diff(
            final, {k: saved[k] for k in final}))
    out.update(dispatches=stats["dispatches"], reordered=stats["reordered"])
    return out


def _comparer(mtil: Path, task: dict, models: list, out: dict[str, Any], tmp: Path):
    """The post-step hook on the reference's side: weights after steps 0 … T−1 vs ours; counts
    after step T−1; at its extra step T, the frozen list with that step's routing counted, then
    the counts restored to those of the T batches ours counts (our stated T-step deviation)."""
    loops = _loops()
    counted: dict[str, Any] = {}

    def compare(i, _weights):
        model = models[-1]
        if i == STEPS:
            out["extra_counts"] = max(out["extra_counts"], _count_diff(model, task["counts"]))
            as_is, ours_t = tmp.with_name(tmp.name + "-as-is"), tmp.with_name(tmp.name + "-T")
            _write_frozen(mtil, model, as_is)
            for name, counts in counted.items():
                _set_counts(model.get_submodule(name), counts)
            _write_frozen(mtil, model, ours_t)
            out["extra_frozen"] += len(set(as_is.read_text().splitlines())  # 4 names each,
                                       ^ set(ours_t.read_text().splitlines())) // 8  # in and out
            return
        got = _moe_weights(model)
        mine = task["snapshots"][i]
        later = {k: v.new_zeros(v.shape) for k, v in got.items() if k not in mine}
        diff = loops._all_weights_diff({**mine, **later}, got)  # later tasks' routers stay 0
        out["steps"] = loops._worst(out["steps"], diff)
        out["by_task"][task["index"]] = max(out["by_task"][task["index"]], diff[0])
        out["count"] += 1
        if i == STEPS - 1:
            out["counts"] = max(out["counts"], _count_diff(model, task["counts"]))
            counted.update({n: _counts(model.get_submodule(n)).clone() for n in task["counts"]})

    return compare


def _counts(block):
    """A reference block's activation counts (``choose_map_image`` / ``choose_map_text``)."""
    return block.choose_map_text if block.text_or_image == "text" else block.choose_map_image


def _set_counts(block, counts) -> None:
    if block.text_or_image == "text":
        block.choose_map_text = counts.clone()
    else:
        block.choose_map_image = counts.clone()


def _count_diff(model, counts: dict[str, Any]) -> float:
    """Largest difference between the reference's activation counts and ours, over blocks."""
    return max(float((_counts(model.get_submodule(name)) - ours).abs().max())
               for name, ours in counts.items())


def _write_frozen(mtil: Path, model, path: Path) -> None:
    """The reference's own block appending each block's 2 most activated experts to a list."""
    from types import SimpleNamespace

    import torch

    common.run_statements(mtil / "src" / "models" / "finetune.py",
                          'with open(frozen_path, "a") as file:', "bingo!",
                          {"frozen_path": str(path), "torch": torch, "print": lambda *a: None,
                           "model": SimpleNamespace(module=model)},
                          replace={"range(12)": f"range({LAYERS})"})


def _backbone_floor(mtil: Path, pristine) -> tuple[float, float]:
    """The reference's text tower without experts vs open_clip's on the same weights: gradient
    of a fixed projection of the text embeddings w.r.t. the token embeddings (the rounding
    floor of the comparison: sequence-first vs batch-first attention)."""
    import copy
    from types import SimpleNamespace

    import torch

    ref = _reference_model(mtil, pristine, {}, {"extra": 0, "dispatches": 0, "reordered": 0})
    plain = SimpleNamespace(task_id=-1, apply_moe=False, is_train=False, topk=2, experts_num=2,
                            ffn_adapt=False, ffn_option="parallel", ffn_num=64, autorouter=False,
                            ffn_adapt_where="AdapterDoubleEncoder")
    state = {k: v.clone() for k, v in pristine.model.state_dict().items() if k != "attn_mask"}
    tokens = pristine.tokenizer(["a photo of a red circle", "a blue square on grass", "a star"])
    direction = torch.randn(len(tokens), pristine.model.text_projection.shape[1],
                            generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = []
    with contextlib.redirect_stdout(None):
        models = [ref.build_model(state, args=plain).double(), copy.deepcopy(pristine.model)]
    for model in models:
        embedded = model.token_embedding(tokens).detach().requires_grad_(True)
        model.token_embedding.forward = lambda t, e=embedded: e
        (model.train().encode_text(tokens) * direction).sum().backward()
        grads.append(embedded.grad)
    return common.max_diff(grads[1], grads[0])


def run(refs: common.Refs) -> list[common.Row]:
    import tempfile

    import torch

    import streams

    mtil = refs.path(MOE) / "mtil"
    stream = streams.get("toy-mtil", domains=DOMAINS, n_train=IMAGES, n_test=1, seed=0)
    pristine = _loops()._toy(name="cl-tiny-vit")  # 2 blocks per tower, as `range(2)`
    with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng(devices=[]):
        ours = _ours(stream, pristine, Path(tmp))
        got = _reference(mtil, stream, pristine, ours, Path(tmp))
    floor = _backbone_floor(mtil, pristine)
    what = (f"2 toy-mtil tasks × T = {STEPS} steps, batch {BATCH}, cl-tiny-vit (2 + 2 blocks), "
            f"{EXPERTS} experts, top-2, dropout {ours[0]['dropout']:g}, lr {LRS[0]:g} then "
            f"{LRS[1]:g}, warm-up {WARMUP}")
    slots = 2 * 2 * 2 * LAYERS  # tasks × towers × blocks × 2 frozen per block
    trained = f"{min(got['n_trained'])} to {max(got['n_trained'])}"
    return [
        common.Row("moe-adapters loop: rates", f"learning rate of each step vs `utils.cosine_lr` "
                   f"as `finetune` applies it, {what}; the reference's extra step T runs at lr "
                   f"{common.fmt(got['last_lr'])}", *got["lrs"], tol=1e-18),
        common.Row("moe-adapters loop: groups", "AdamW settings that differ (betas, eps, weight "
                   "decay, flags) per task, count", got["groups"], dtype="count", tol=0),
        common.Row("moe-adapters loop: trained parameters", f"parameters with a gradient at "
                   f"each step ({trained} per step: the task's routers and the unfrozen experts "
                   "that got samples) that differ, count over 8 steps", got["trained"],
                   dtype="count", tol=0,
                   note="the reference's optimiser also holds the other tasks' routers, "
                        "which get no gradient; they stay 0 (in the steps row)"),
        common.Row("moe-adapters loop: loss", "CLIP cross-entropy (label smoothing 0.2) of each "
                   "step vs the reference's printed `Loss:`, 8 steps", *got["loss"], tol=1e-12),
        common.Row("moe-adapters loop: steps", f"every expert and router weight of the 4 blocks "
                   f"after each of {got['count']} AdamW steps vs `finetune(args)` "
                   f"(`train_full_shot_router11_experts22_1000iters.sh`), {what}; its routers "
                   f"drew our {got['draws']} noise draws", *got["steps"], tol=1e-12,
                   note="the backbone's rounding (attention gradients, sequence-first vs "
                        "batch-first: floor row): "
                        f"task 0 {common.fmt(got['by_task'][0])}, task 1 (from task 0's "
                        f"weights) {common.fmt(got['by_task'][1])}"),
        common.Row("moe-adapters loop: dispatch order", "block forwards in which the "
                   "reference's unstable `sort` hands an expert its samples in another order "
                   f"than ours (increasing), of its {got['dispatches']}", got["reordered"],
                   dtype="count", tol=0, note="with dropout the masks would then land on other "
                   "samples (stated deviation); here the sort kept the order"),
        common.Row("moe-adapters end of task", "experts and routers after the task vs the "
                   "checkpoint the reference saves (and `--load`s for the next task), 2 tasks",
                   *got["final"], tol=1e-12),
        common.Row("backbone rounding floor", "text tower alone (no experts): gradient w.r.t. "
                   "the token embeddings, the reference's sequence-first model vs open_clip's "
                   "batch-first one on the same weights", *floor, tol=1e-12),
        common.Row("activate-freeze: counts", "samples routed to each expert of each block "
                   "over the task's T batches vs `choose_map_image` / `choose_map_text`, "
                   "largest difference, 2 tasks", got["counts"], dtype="count", tol=0),
        common.Row("activate-freeze: frozen experts", "parameter names in the reference's "
                   "frozen list (its own top-2 block, on the counts of the same T batches) vs "
                   f"ours after each task ({' then '.join(map(str, got['n_frozen']))} experts "
                   "frozen), differing, count", got["frozen"], dtype="count", tol=0),
        common.Row("activate-freeze: the reference's step T", "frozen experts that change when "
                   "the routing of the reference's extra step T (lr 0) is counted too, as it "
                   f"is, of the {slots} frozen (2 per block and task); its counts then differ "
                   "from ours by "
                   f"up to {common.fmt(got['extra_counts'])}", got["extra_frozen"],
                   dtype="count", tol=math.inf,
                   note="stated deviation: our loop runs T steps; at T = 4 with a few samples "
                        "per step one batch moves the top-2, at the reference's T = 1000 it is "
                        "1/1001 of the counts; the rows above count T batches on both sides"),
    ]
