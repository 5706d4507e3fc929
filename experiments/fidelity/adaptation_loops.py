"""Training loops step by step: clip-finetune / wise-ft, lwf, zscl, SLCA's slow learner, DDAS.

References executed (``Thunderbeee/ZSCL`` ``mtil/``):

* ``src/models/finetune.py`` ``finetune(args)``, ast-extracted and run whole, once per task:
  loading (``--load``), parameter selection (``--train-mode whole``), ``AdamW``,
  ``utils.cosine_lr``, the LwF / ZSCL teacher, reference data and captions, the
  ``range(total_iterations + 1)`` loop (data, schedule, loss, step, ``--we`` snapshots),
  ``--wise_merge`` and the checkpoint it saves. One change: ``.cuda()`` is deleted (CPU).
  ``args`` comes from the reference's own ``src/args.py`` ``parse_arguments()`` on the command
  lines of ``scripts/WiSE_finetune.sh`` (plus ``--wd 0.1``, so that weight decay is compared;
  its loop is ``finetune.sh``'s), ``lwf.sh`` and ``ZSCL.sh``, with ``--iterations``,
  ``--warmup_length``, ``--batch-size``, ``--avg_freq``, ``--lr`` and ``--save`` set to the
  small values below.
* ``src/utils.py`` imported unmodified: ``cosine_lr``, and ``torch_save`` / ``torch_load``, so
  tasks are chained through real checkpoint files (``--load``, LwF's ``--ref-model``).
* ``src/models/helpers.py`` ``distillation``, ``l2_loss``, ``merge_we`` and ``clip/model.py``
  ``CLIP.forward``, ast-extracted.

Stand-ins: ``clip.load`` returns a fresh copy of ``toy-clip`` in float64 whose ``forward`` is
the reference's ``CLIP.forward``, its parameters requiring gradients (as ``clip.load``'s); in the
"teacher frozen" runs the teacher (``ref_model``, the second ``clip.load`` of a task) does not
require gradients, as ours: torch's ``linear`` on a non-contiguous input (the attention's
batch-first transpose) takes another path for weights that require gradients, even under
``no_grad``, which changes the teacher's features in the last bit.
``clip.tokenize`` is ``toy-clip``'s tokenizer. ``datasets.<name>`` yields, epoch by epoch,
exactly the batches our strategy drew: its ``train_loader`` has the length of an epoch and its
k-th ``iter`` gives epoch k, as tuples (the task, LwF's reference data) or
``{"images", "labels"}`` dicts (ZSCL's ``ImageNet``); ``conceptual_captions`` holds the stream's
reference captions. ``tqdm`` is the identity; ``evaluate`` is never reached.

References executed (``GengDavid/SLCA``): ``models/slca.py`` ``SLCA._stage1_training`` and
``SLCA._run`` and the globals ``lrate``, ``lrate_decay``, ``weight_decay`` (ast-extracted,
unchanged; ``epochs`` and ``milestones`` set as ``exps/*.json`` set them), ``utils/inc_net.py``
``FinetuneIncrementalNet.forward`` and ``convs/linears.py`` ``SimpleContinualLinear``
(ast-extracted; timm's ``trunc_normal_`` is torch's). The network's ``convnet`` is
``toy-clip``'s image tower returning L2-normalised embeddings (our adaptation to CLIP); each new
head layer gets our layer's initial weights (stated deviation: ours are drawn from the task's
generator); the head carries on from the reference's own previous task (``fc.update`` freezes
earlier layers); ``self`` is a namespace holding the network, ``bcb_lrscale`` (its default
1/100), ``fix_bcb``, ``_known_classes``; ``train_loader`` yields our batches with head rows as
targets. Our milestone in steps is the reference's in epochs times the batches of an epoch.

Reference executed (``JiazuoYu/MoE-Adapters4CL`` ``mtil/``): ``src/models/AutoEncoder.py``
``AutoEncoder(args)`` (its training branch) with ``Autoencoder``, ``Alexnet_FE``,
``exp_lr_scheduler`` and ``encoder_criterion``, ast-extracted; changes: ``.cuda()`` deleted and
the input width ``256 * 13 * 13`` (AlexNet conv5) replaced by the width of our features. Its
AlexNet is a stand-in whose conv part is the identity, so the "images" its ``train_loader``
yields are our feature batches, epoch by epoch; ``args.load`` is a checkpoint (written with its
``utils.torch_save``) whose autoencoder ``task_id`` holds our initial weights, loaded by its own
``utils.torch_load``. Ours: ``DDAS.fit`` on two domains of seeded random features, its
``train_autoencoder`` wrapped to record the batches and the initial weights.

Ours: the strategies themselves (``strategies.get``) driven by the runner's calls
(``before_task``, ``train_task``, ``after_task``) on ``toy-mtil`` (2 tasks) and ``toy-cil``
(2 tasks of 2 digits). On both sides torch's global optimiser hooks record every step's
learning rates and parameter groups and the trained weights after it; our strategies'
``cycle`` is wrapped to record the batches they draw (and one more per stream, for the
reference's extra step T, which runs at learning rate 0). Weight rows compare every trained
weight; for the unchanged-teacher runs the key third of each attention ``in_proj_bias`` is
reported apart: it has no gradient in exact arithmetic, Adam turns rounding noise into steps,
and it changes no output.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Self

import common

NAME = "adaptation-loops"
DESCRIPTION = ("clip-finetune, lwf, wise-ft and zscl training loops, SLCA's slow learner and "
               "DDAS autoencoder training, step by step, vs the references' own loops")
ZSCL = common.Git("Thunderbeee/ZSCL", "b96e71423e2cbd592ddd229aaf2f1e889b86f1af")
SLCA_REF = common.Git("GengDavid/SLCA", "169d4e6b91e3ca30caa717200c1944981c4426d1")
MOE = common.Git("JiazuoYu/MoE-Adapters4CL", "4572d97d28d3a7b45e8808bee1d3c64263f425f2")
REFERENCES = (ZSCL, SLCA_REF, MOE)

STEPS, WARMUP, BATCH, EVERY = 4, 2, 4, 2  # T, warm-up, batch, --avg_freq
LRS = (1e-3, 5e-4)  # per task (the scripts' --lr per dataset; our lr_per_task)
DOMAINS, IMAGES = ["backgrounds", "positions"], 3  # 3 and 4 classes, images per class
REFERENCE_SCENES = 10
#: the method, the flags of its script, and our options. wise-ft runs clip-finetune's loop
#: (with ``--wd 0.1``, so that weight decay is compared) and merges after each task.
METHODS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "wise-ft": (["--method", "finetune", "--wd", "0.1", "--wise_merge", "--wise_ft_model", "n",
                 "--wise_ft_alpha", "0.8", "--ref-dataset", "ImageNet"], {"weight_decay": 0.1}),
    "lwf": (["--method", "ZSCL", "--image_loss", "--text_loss", "--fair"], {}),
    "zscl": (["--method", "ZSCL", "--image_loss", "--text_loss", "--we", "--avg_freq",
              str(EVERY), "--l2", "1", "--ref-dataset", "ImageNet", "--ref-sentences",
              "conceptual_captions"], {"reference_batch_size": BATCH, "ensemble_every": EVERY}),
}
#: DDAS: feature width, rows per domain, batch, the reference's --iterations (it runs one more)
DDAS_DIM, DDAS_ROWS, DDAS_BATCH, DDAS_ITERATIONS = 48, 10, 4, 33
#: SLCA: images per class, batch, epochs, milestone (epochs)
SLCA_IMAGES, SLCA_BATCH, SLCA_EPOCHS, SLCA_MILESTONE = 4, 3, 2, 1
GROUP_KEYS = ("betas", "eps", "weight_decay", "amsgrad", "maximize", "momentum", "dampening",
              "nesterov", "foreach", "fused", "capturable", "differentiable",
              "decoupled_weight_decay")


class _Steps:
    """Every optimiser step while active (torch's global hooks): groups before, weights after.

    ``names`` maps ``id(parameter)`` to a name; None names them by position in the groups.
    """

    def __init__(self, names: dict[int, str] | None, after=None) -> None:
        self.names, self.after = names, after
        self.lrs: list[list[float]] = []
        self.groups: list[dict[str, Any]] = []

    def __enter__(self) -> Self:
        from torch.optim.optimizer import (
            register_optimizer_step_post_hook,
            register_optimizer_step_pre_hook,
        )

        self._handles = (register_optimizer_step_pre_hook(self._pre),
                         register_optimizer_step_post_hook(self._post))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()

    def _named(self, opt) -> list[list[tuple[str, Any]]]:
        return [[(self.names[id(p)] if self.names is not None else f"{i}.{j}", p)
                 for j, p in enumerate(g["params"])] for i, g in enumerate(opt.param_groups)]

    def _pre(self, opt, args, kwargs) -> None:
        self.lrs.append([float(g["lr"]) for g in opt.param_groups])
        if not self.groups:
            self.groups = [{"names": [n for n, _ in named], **{k: g[k] for k in GROUP_KEYS
                                                               if k in g}}
                           for named, g in zip(self._named(opt), opt.param_groups, strict=True)]

    def _post(self, opt, args, kwargs) -> None:
        if self.after is not None:
            self.after(len(self.lrs) - 1, {n: p.detach().clone() for named in self._named(opt)
                                           for n, p in named})


def _worst(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return max(a[0], b[0]), max(a[1], b[1])


def _split_key_bias(name: str, value):
    """(the tensor without its attention key bias, that key bias): ``in_proj_bias`` is
    ``[q | k | v]``; the key bias gets no gradient in exact arithmetic (adding it shifts every
    logit of a query by the same amount, which the softmax ignores)."""
    if not name.endswith("attn.in_proj_bias"):
        return value, value[:0]
    width = len(value) // 3
    import torch

    return torch.cat([value[:width], value[2 * width:]]), value[width:2 * width]


def _weights_diff(ours: dict, ref: dict) -> tuple[tuple[float, float], tuple[float, float]]:
    """(max abs, max rel) differences of the weights without the attention key biases, and of
    the key biases (relative to the reference's largest weight)."""
    if ours.keys() != ref.keys():
        raise AssertionError(f"trained parameters differ: {sorted(set(ours) ^ set(ref))[:4]}")
    d, k, scale = 0.0, 0.0, 0.0
    for name, v in ours.items():
        (a, ka), (b, kb) = _split_key_bias(name, v.double()), _split_key_bias(
            name, ref[name].double())
        d = max(d, float((a - b).abs().max()))
        if len(ka):
            k = max(k, float((ka - kb).abs().max()))
        scale = max(scale, float(b.abs().max()))
    return (d, d / scale if scale else 0.0), (k, k / scale if scale else 0.0)


def _all_weights_diff(ours: dict, ref: dict) -> tuple[float, float]:
    (d, dr), (k, kr) = _weights_diff(ours, ref)
    return max(d, k), max(dr, kr)


def _group_mismatches(ours: list[dict], ref: list[dict]) -> int:
    if len(ours) != len(ref):
        return max(len(ours), len(ref))
    return sum(int(o.get(k) != r.get(k)) for o, r in zip(ours, ref, strict=True)
               for k in {*o, *r})


def _recording_cycle(strategy, streams_seen: list) -> None:
    """Wrap ``strategy.cycle`` so that every stream of batches it hands out is recorded."""
    original = strategy.cycle

    def cycle(dataset, batch_size, generator, ctx):
        source = original(dataset, batch_size, generator, ctx)
        record = {"dataset": dataset, "batch_size": batch_size, "batches": [], "source": source}
        streams_seen.append(record)

        def gen():
            for batch in source:
                record["batches"].append(batch)
                yield batch
        return gen()

    strategy.cycle = cycle


def _keys(images) -> list[bytes]:
    return sorted(x.numpy().tobytes() for x in images)


def _epoch_windows_off(record) -> tuple[int, int]:
    """(windows of ⌈N/B⌉ batches that are not one pass over the dataset, windows checked)."""
    import torch

    data = record["dataset"]
    n = len(data)
    per_epoch = -(-n // record["batch_size"])
    every = _keys(torch.stack([data[i][0] for i in range(n)]))
    batches = record["batches"]
    off = checked = 0
    for start in range(0, len(batches) - per_epoch + 1, per_epoch):
        window = torch.cat([b[0] for b in batches[start:start + per_epoch]])
        off += int(_keys(window) != every)
        checked += 1
    return off, checked


class _Epochs:
    """A stand-in ``DataLoader``: its k-th ``iter`` yields epoch k of the recorded batches."""

    def __init__(self, batches: list, per_epoch: int, form=None) -> None:
        self.batches, self.per_epoch, self.epochs = batches, per_epoch, 0
        self.form = form or (lambda x, y: (x, y))

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self):
        e, self.epochs = self.epochs, self.epochs + 1
        chunk = self.batches[e * self.per_epoch:(e + 1) * self.per_epoch]
        if not chunk:
            raise AssertionError("the reference asked for more batches than ours drew")
        return iter([self.form(x, y) for x, y in chunk])


def _toy(double: bool = True, name: str = "toy-clip"):
    """toy-clip, or backbone ``name`` (float64 when ``double``, with preprocessing that gives
    float64 images)."""
    from torchvision import transforms

    from cl.models.backbones import create_backbone

    backbone = create_backbone(name)
    if double:
        backbone.model.double()
        backbone.preprocess = transforms.Compose([backbone.preprocess,
                                                  transforms.Lambda(lambda x: x.double())])
    return backbone


def _ours(name: str, options: dict, stream, pristine, tmp: Path) -> list[dict]:
    """Our strategy ``name`` over the stream's tasks; per task what the loop did."""
    import copy

    import strategies
    from cl.core.runner import Runner

    backbone = copy.deepcopy(pristine)
    strategy = strategies.get(name, iterations=STEPS, batch_size=BATCH, warmup=WARMUP,
                              lr_per_task=LRS, **options)
    seen: list = []
    _recording_cycle(strategy, seen)
    runner = Runner(stream, strategy, backbone, out_dir=tmp / f"ours-{name}", progress=False)
    names = {id(p): n for n, p in backbone.model.named_parameters()}
    tasks = []
    for t in range(len(stream)):
        ctx = runner.context(t)
        strategy.before_task(ctx)
        snapshots: list[dict] = []
        with _Steps(names, lambda i, w, into=snapshots: into.append(w)) as steps:
            first = len(seen)
            strategy.train_task(runner.task_data(t), ctx)
        strategy.after_task(ctx)
        records = seen[first:]
        for r in records:  # the batch of the reference's extra step T
            r["batches"].append(next(r["source"]))
        final = {k: p.detach().clone() for k, p in backbone.model.named_parameters()
                 if k in snapshots[-1]}
        tasks.append({"lrs": steps.lrs, "groups": steps.groups, "snapshots": snapshots,
                      "final": final, "records": records})
    return tasks


def _datasets(stream, t: int, dataset_name: str, records: list[dict]):
    """The reference's ``datasets`` module for task ``t``: the task (its training stream, and
    LwF's reference stream when built without ``batch_size_eval``), ZSCL's ``ImageNet`` (the
    second stream, as dicts) and ``conceptual_captions`` (the reference captions)."""
    from types import SimpleNamespace

    import torch

    space = stream.train_label_space(t)
    if len(set(space.templates)) != 1:
        raise AssertionError("the reference takes one template per dataset")

    def per_epoch(rec: dict) -> int:
        return -(-len(rec["dataset"]) // rec["batch_size"])

    def task_data(preprocess, location=None, batch_size=None, **kw):
        rec = records[0] if "batch_size_eval" in kw else records[1]
        local = space.index_of  # global class ids -> the dataset's own labels
        loader = _Epochs(rec["batches"], per_epoch(rec),
                         lambda x, y: (x, torch.as_tensor(local(y.tolist()))))
        return SimpleNamespace(train_loader=loader, classnames=list(space.class_names),
                               template=space.templates[0][0].format)

    def imagenet(preprocess, location=None, batch_size=None, **kw):
        return SimpleNamespace(train_loader=_Epochs(
            records[1]["batches"], per_epoch(records[1]),
            lambda x, y: {"images": x, "labels": y}))

    def captions(preprocess, location=None, batch_size=None, **kw):
        return SimpleNamespace(train_dataset=SimpleNamespace(
            captions=stream.metadata["reference_set"]()[1]))

    return SimpleNamespace(**{dataset_name: task_data, "ImageNet": imagenet,
                              "conceptual_captions": captions})


def _reference_loop(name: str, mtil: Path, stream, pristine, ours: list[dict], tmp: Path,
                    frozen_teacher: bool = False) -> dict[str, Any]:
    """ZSCL's ``finetune(args)`` per task on our batches; compared with ``ours`` as it runs."""
    import copy
    import io
    import os
    import sys
    from types import SimpleNamespace

    import torch
    import torch.nn.functional as F

    utils = common.import_file(mtil / "src" / "utils.py", "fidelity_ref_zscl_utils")
    helpers = common.load_source(mtil / "src" / "models" / "helpers.py",
                                 ["distillation", "l2_loss", "merge_we"],
                                 namespace={"torch": torch, "F": F})
    forward = common.load_source(mtil / "clip" / "model.py", ["CLIP.forward"]).forward
    patched = copy.deepcopy(pristine.model)
    patched.__class__ = type("ReferenceCLIP", (type(patched),), {"forward": forward})
    argparse_ns = common.load_source(mtil / "src" / "args.py", ["parse_arguments"],
                                     namespace={"argparse": __import__("argparse"),
                                                "torch": torch})
    names: dict[int, str] = {}
    loads = [0]

    def load(model_name, jit=False):
        loads[0] += 1  # per task: the model, then (lwf, zscl) the teacher
        trains = not (frozen_teacher and loads[0] == 2)
        model = copy.deepcopy(patched).requires_grad_(trains)  # clip.load's model trains
        names.update({id(p): n for n, p in model.named_parameters()})
        return model, pristine.preprocess, pristine.preprocess

    def never(*a, **k):
        raise AssertionError("the reference reached a function this comparison does not set up")

    flags, _ = METHODS[name]
    out = {"lrs": (0.0, 0.0), "steps": (0.0, 0.0), "final": (0.0, 0.0), "key": (0.0, 0.0),
           "groups": 0, "last_lr": 0.0, "count": 0}
    save = tmp / f"ref-{name}{'-frozen' if frozen_teacher else ''}"
    previous = None
    for t, task in enumerate(stream):
        loads[0] = 0
        dataset_name = f"Task{t}"

        datasets = _datasets(stream, t, dataset_name, ours[t]["records"])
        namespace = {
            "copy": copy, "os": os, "torch": torch, "F": F, "tqdm": lambda it, **k: it,
            "clip": SimpleNamespace(load=load, tokenize=pristine.tokenizer),
            "datasets": datasets, "templates": None, "utils": utils, "evaluate": never,
            "zeroshot_classifier": never, "get_datasets_text": never, "wise_we": never,
            "moving_avg": never, "virtual_vocab": never, "merge_we": helpers.merge_we,
            "l2_loss": helpers.l2_loss, "distillation": helpers.distillation}
        finetune = common.load_source(mtil / "src" / "models" / "finetune.py", ["finetune"],
                                      replace={".cuda()": ""}, namespace=namespace).finetune
        argv = ["--train-mode=whole", f"--train-dataset={dataset_name}", f"--lr={LRS[t]}",
                "--ls", "0.2", "--iterations", str(STEPS), "--batch-size", str(BATCH),
                "--warmup_length", str(WARMUP), "--save", str(save), *flags]
        if name == "lwf":
            argv += ["--ref-dataset", dataset_name]
        if previous is not None:
            argv += ["--load", previous] + (["--ref-model", previous] if name == "lwf" else [])
        saved_argv, sys.argv = sys.argv, ["main.py", *argv]
        try:
            args = argparse_ns.parse_arguments()
        finally:
            sys.argv = saved_argv
        def compare(i, weights, snapshots=ours[t]["snapshots"]):
            if i < len(snapshots):  # not the reference's extra step T
                main, key = _weights_diff(snapshots[i], weights)
                out["steps"], out["key"] = _worst(out["steps"], main), _worst(out["key"], key)
                out["count"] += 1

        with _Steps(names, compare) as steps, contextlib.redirect_stdout(io.StringIO()):
            finetune(args)
        if len(steps.lrs) != STEPS + 1:
            raise AssertionError(f"the reference ran {len(steps.lrs)} steps, not T + 1")
        ref_lrs = [g[0] for g in steps.lrs]
        ours_lrs = [g[0] for g in ours[t]["lrs"]]
        out["lrs"] = _worst(out["lrs"], common.max_diff(ours_lrs, ref_lrs[:STEPS]))
        out["last_lr"] = max(out["last_lr"], abs(ref_lrs[STEPS]))
        out["groups"] += _group_mismatches(ours[t]["groups"], steps.groups)
        previous = str(save / f"{dataset_name}.pth")
        saved = torch.load(previous)["state_dict"]
        main, key = _weights_diff(ours[t]["final"], {k: saved[k] for k in ours[t]["final"]})
        out["final"], out["key"] = _worst(out["final"], main), _worst(out["key"], key)
    return out


def _zscl_family(mtil: Path) -> list[common.Row]:
    import dataclasses
    import functools
    import tempfile

    import streams
    from streams.benchmarks.toy import reference_set

    stream = streams.get("toy-mtil", domains=DOMAINS, n_train=IMAGES, n_test=1, seed=0)
    stream = dataclasses.replace(stream, metadata={
        **stream.metadata, "reference_set": functools.partial(reference_set, n=REFERENCE_SCENES,
                                                              seed=0)})
    pristine = _toy()
    rows, windows = [], [0, 0]
    lrs, last_lr, groups = (0.0, 0.0), 0.0, 0
    key = (0.0, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (_, options) in METHODS.items():
            ours = _ours(name, options, stream, pristine, Path(tmp))
            for task in ours:
                for rec in task["records"]:
                    off, checked = _epoch_windows_off(rec)
                    windows[0] += off
                    windows[1] += checked
            exact = _reference_loop(name, mtil, stream, pristine, ours, Path(tmp),
                                    frozen_teacher=name != "wise-ft")
            lrs, last_lr = _worst(lrs, exact["lrs"]), max(last_lr, exact["last_lr"])
            groups += exact["groups"]
            rows += _method_rows(name, exact)
            if name != "wise-ft":
                as_is = _reference_loop(name, mtil, stream, pristine, ours, Path(tmp))
                key = _worst(key, as_is["key"])
                rows.append(common.Row(
                    f"{name} loop, reference teacher as is", "trained weights (attention key "
                    f"biases aside) after each of {as_is['count']} steps and after each task, "
                    "the reference's teacher requiring gradients as `clip.load` gives it",
                    *_worst(as_is["steps"], as_is["final"]), tol=1e-9,
                    note="the teacher's features differ in the last bit: torch's `linear` on "
                         "the attention's transposed input takes another path when its weights "
                         "require gradients, even under `no_grad`; Adam amplifies that on "
                         "weights whose gradient is ≈ 0"))
    methods = f"{len(METHODS)} methods"
    return [
        common.Row(f"warm-up + cosine schedule ({methods})",
                   f"learning rate of each of our T = {STEPS} steps vs `utils.cosine_lr` as "
                   f"`finetune` applies it (warm-up {WARMUP}, lr {LRS[0]:g} then {LRS[1]:g}); "
                   f"the reference's extra step T runs at lr {common.fmt(last_lr)}",
                   *lrs, tol=1e-18),
        common.Row(f"optimiser parameter groups ({methods})",
                   "settings that differ (trained parameter names, betas, eps, weight decay, "
                   "AdamW flags) per task, count", groups, dtype="count", tol=0),
        common.Row(f"data order ({methods})",
                   f"windows of ⌈N/B⌉ consecutive batches that are not one pass over the "
                   f"task's (or LwF / ZSCL reference) images, of {windows[1]} (the reference "
                   "re-iterates its shuffled loader every epoch)", windows[0], dtype="count",
                   tol=0),
        *rows,
        common.Row("lwf, zscl: attention key biases, reference teacher as is",
                   "the key third of every `in_proj_bias` in the two rows above", *key,
                   tol=math.inf,
                   note="no gradient in exact arithmetic (a key bias shifts all logits of a "
                        "query alike): Adam turns rounding noise into steps up to lr, which "
                        "change no output"),
    ]


def _method_rows(name: str, got: dict[str, Any]) -> list[common.Row]:
    what = {"wise-ft": "`WiSE_finetune.sh` + `--wd 0.1`", "lwf": "`lwf.sh`",
            "zscl": f"`ZSCL.sh`, `--avg_freq {EVERY}`"}[name]
    label = "clip-finetune / wise-ft" if name == "wise-ft" else name
    frozen = "" if name == "wise-ft" else " (the reference's teacher frozen, as ours)"
    end = {"wise-ft": "`--wise_merge` (α 0.8, θ₀ the task's start)",
           "lwf": "the task's last step", "zscl": "the `--we` average"}[name]
    return [
        common.Row(f"{label} loop", f"trained weights after each of {got['count']} steps "
                   f"(2 toy-mtil tasks × T = {STEPS}) vs `finetune(args)`, {what}{frozen}",
                   *_worst(got["steps"], got["key"]), tol=1e-12),
        common.Row(f"{name} end of task", f"weights after {end} vs the checkpoint the "
                   f"reference saves (and `--load`s for the next task), 2 tasks{frozen}",
                   *_worst(got["final"], got["key"]), tol=1e-12)]


def run(refs: common.Refs) -> list[common.Row]:
    mtil = refs.path(ZSCL) / "mtil"
    slca = refs.path(SLCA_REF)
    moe = refs.path(MOE) / "mtil"
    return _zscl_family(mtil) + _slca(slca) + _ddas(moe)


def _ddas(mtil: Path) -> list[common.Row]:
    """Our DDAS autoencoders' training vs ``AutoEncoder.py``'s ``AutoEncoder(args)`` (training)."""
    import contextlib
    import io
    import os
    import tempfile
    from types import SimpleNamespace

    import torch
    import torch.nn.functional as F
    from torch import nn, optim

    import strategies.adaptation.ddas as ours_ddas

    g = torch.Generator().manual_seed(0)
    X = torch.cat([torch.randn(DDAS_ROWS, DDAS_DIM, generator=g) * (1 + d) + 2 * d
                   for d in range(2)])
    y = torch.arange(2).repeat_interleave(DDAS_ROWS)
    runs: list[dict] = []
    train = ours_ddas.train_autoencoder

    def recording(model, batches, **kw):
        run = {"init": {k: v.clone() for k, v in model.state_dict().items()}, "batches": [],
               "snapshots": []}
        runs.append(run)

        def gen():
            for b in batches:
                run["batches"].append(b)
                yield b
        with _Steps(None, lambda i, w, into=run["snapshots"]: into.append(w)) as steps:
            out = train(model, gen(), **kw)
        run["lrs"], run["groups"] = steps.lrs, steps.groups
        return out

    ours_ddas.train_autoencoder = recording
    try:
        ours_ddas.DDAS(threshold=1.0, iterations=DDAS_ITERATIONS + 1, batch_size=DDAS_BATCH,
                       random_state=0).fit(X, y)
    finally:
        ours_ddas.train_autoencoder = train

    utils = common.import_file(mtil / "src" / "utils.py", "fidelity_ref_moe_utils")
    alexnet = nn.Sequential(nn.Sequential(nn.Identity(), nn.Identity(), nn.Identity()))
    namespace = {"nn": nn, "torch": torch, "F": F, "optim": optim, "os": os, "utils": utils,
                 "tqdm": lambda it, **k: it,
                 "clip": SimpleNamespace(load=lambda *a, **k: (None, None, None)),
                 "models": SimpleNamespace(alexnet=lambda pretrained: alexnet)}
    ref = common.load_source(
        mtil / "src" / "models" / "AutoEncoder.py",
        ["Autoencoder", "Alexnet_FE", "exp_lr_scheduler", "encoder_criterion", "AutoEncoder"],
        replace={".cuda()": "", "256 * 13 * 13": str(DDAS_DIM)}, namespace=namespace)
    per_epoch = -(-DDAS_ROWS // DDAS_BATCH)
    out = {"lrs": (0.0, 0.0), "steps": (0.0, 0.0), "groups": 0, "count": 0, "windows": [0, 0]}
    with tempfile.TemporaryDirectory() as tmp:
        for d, run in enumerate(runs):
            start = nn.ModuleList(ref.Autoencoder() for _ in range(12))  # AE d: our init
            start[d].load_state_dict(run["init"])
            with contextlib.redirect_stdout(io.StringIO()):
                utils.torch_save(start, os.path.join(tmp, "start.pth"))
            record = {"dataset": list(zip(X[y == d], y[y == d], strict=True)),
                      "batch_size": DDAS_BATCH, "batches": [(b, b) for b in run["batches"]]}
            off, checked = _epoch_windows_off(record)
            out["windows"] = [out["windows"][0] + off, out["windows"][1] + checked]
            loader = _Epochs(record["batches"], per_epoch, lambda x, _: (x, torch.zeros(len(x))))
            namespace["datasets"] = SimpleNamespace(**{
                f"Domain{d}": lambda *a, loader=loader, **k: SimpleNamespace(train_loader=loader)})
            args = SimpleNamespace(eval_only=False, model="ViT-B/16", load=os.path.join(
                tmp, "start.pth"), task_id=d, train_dataset=f"Domain{d}", data_location=None,
                batch_size=DDAS_BATCH, batch_size_eval=DDAS_BATCH, iterations=DDAS_ITERATIONS,
                save=tmp)
            def compare(i, weights, snapshots=run["snapshots"]):
                out["steps"] = _worst(out["steps"], _all_weights_diff(snapshots[i], weights))
                out["count"] += 1

            with _Steps(None, compare) as steps, \
                    contextlib.redirect_stdout(io.StringIO()):
                ref.AutoEncoder(args)
            if len(steps.lrs) != len(run["lrs"]):
                raise AssertionError(f"the reference took {len(steps.lrs)} steps, ours "
                                     f"{len(run['lrs'])}")
            out["lrs"] = _worst(out["lrs"], common.max_diff(run["lrs"], steps.lrs))
            out["groups"] += _group_mismatches(run["groups"], steps.groups)
    what = (f"2 autoencoders ({DDAS_DIM} → 100 → {DDAS_DIM}) on {DDAS_ROWS} feature rows each, "
            f"batch {DDAS_BATCH}: `--iterations {DDAS_ITERATIONS}` = "
            f"{DDAS_ITERATIONS + 1} Adam steps, ×0.1 after 10 epochs = step {10 * per_epoch}")
    return [
        common.Row("DDAS autoencoder training: rates", "learning rate at each step vs "
                   f"`exp_lr_scheduler` as `AutoEncoder(args)` applies it, {what}", *out["lrs"],
                   tol=1e-18),
        common.Row("DDAS autoencoder training: groups", "settings that differ (Adam's betas, "
                   "eps, weight decay, flags), count", out["groups"], dtype="count", tol=0),
        common.Row("DDAS autoencoder training: data order", "epochs that are not one pass over "
                   f"the domain's rows, of {out['windows'][1]}", out["windows"][0],
                   dtype="count", tol=0),
        common.Row("DDAS autoencoder training: steps", f"weights after each of {out['count']} "
                   f"Adam steps vs `AutoEncoder(args)`, {what}", *out["steps"], dtype="float32",
                   tol=1e-7),
    ]


def _convnet(visual):
    """SLCA's ``convnet`` on CLIP: the image tower, features ``{"features": î}`` (L2-normalised)."""
    import torch.nn.functional as F
    from torch import nn

    class Convnet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual = visual

        def forward(self, x):
            return {"features": F.normalize(self.visual(x), dim=-1)}

    return Convnet()


def _slca(src: Path) -> list[common.Row]:
    import copy
    import logging
    import re
    import tempfile
    from types import SimpleNamespace

    import torch
    import torch.nn.functional as F
    from torch import nn, optim

    import streams
    from cl.core.runner import Runner
    from strategies.adaptation.slca_strategy import SLCA

    stream = streams.get("toy-cil", attribute="digit", n_tasks=5, n_train=SLCA_IMAGES,
                         n_test=1, seed=0)
    pristine = _toy(double=False)
    per_epoch = -(-2 * SLCA_IMAGES // SLCA_BATCH)
    strategy = SLCA(iterations=SLCA_EPOCHS * per_epoch, batch_size=SLCA_BATCH,
                    milestones=(SLCA_MILESTONE * per_epoch,), ca_epochs=1,
                    ca_samples_per_class=4)
    seen: list = []
    _recording_cycle(strategy, seen)
    backbone = copy.deepcopy(pristine)
    tasks = []
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(stream, strategy, backbone, out_dir=tmp, progress=False)
        for t in range(2):
            ctx = runner.context(t)
            strategy.before_task(ctx)
            names = {id(p): n for n, p in backbone.model.visual.named_parameters(prefix="visual")}
            names.update({id(p): n for n, p in strategy._head.named_parameters(prefix="head")})
            init = strategy._head.heads[t].weight.detach().clone()
            snapshots: list[dict] = []
            with _Steps(names, lambda i, w, into=snapshots: into.append(w)) as steps:
                strategy.train_task(runner.task_data(t), ctx)
            strategy.after_task(ctx)
            tasks.append({"lrs": steps.lrs, "groups": steps.groups, "snapshots": snapshots,
                          "init": init, "record": seen[-1]})

    slca = common.load_source(
        src / "models" / "slca.py", ["lrate", "lrate_decay", "weight_decay",
                                     "SLCA._stage1_training", "SLCA._run"],
        namespace={"torch": torch, "nn": nn, "optim": optim, "F": F, "logging": logging})
    slca.globals.update(epochs=SLCA_EPOCHS, milestones=[SLCA_MILESTONE])  # the json's
    linear = common.load_source(src / "convs" / "linears.py", ["SimpleContinualLinear"],
                                namespace={"torch": torch, "nn": nn, "deepcopy": copy.deepcopy,
                                           "trunc_normal_": nn.init.trunc_normal_})
    forward = common.load_source(src / "utils" / "inc_net.py",
                                 ["FinetuneIncrementalNet.forward"],
                                 namespace={"torch": torch}).forward
    net = type("Network", (nn.Module,), {"forward": forward})()
    net.convnet = _convnet(copy.deepcopy(pristine.model.visual).requires_grad_(True))
    net.fc = None
    ref_names = {}
    out = {"lrs": (0.0, 0.0), "steps": (0.0, 0.0), "groups": 0, "count": 0, "windows": [0, 0]}
    known = 0
    for t, task in enumerate(tasks):
        n = len(task["init"])
        if net.fc is None:
            net.fc = linear.SimpleContinualLinear(net.convnet.visual.output_dim, n)
        else:
            net.fc.update(n)  # freezes the earlier heads
        with torch.no_grad():
            net.fc.heads[t][0].weight.copy_(task["init"])  # our draw (a stated deviation)
        for name, p in net.named_parameters():  # our names: visual.*, head.heads.<t>.*
            ref_names[id(p)] = re.sub(r"^fc\.heads\.(\d+)\.0\.", r"head.heads.\1.",
                                      name.replace("convnet.visual.", "visual.", 1))
        record = task["record"]
        off, checked = _epoch_windows_off(record)
        out["windows"] = [out["windows"][0] + off, out["windows"][1] + checked]
        loader = _Epochs(record["batches"], per_epoch,  # targets: head rows, as the reference's
                         lambda x, y: (None, x, torch.as_tensor(strategy._rows(y.tolist()))))
        me = SimpleNamespace(_network=net, fix_bcb=False, bcb_lrscale=1.0 / 100,
                             log_path="logs/slca_cifar_20e", _multiple_gpus=[], _device="cpu",
                             _known_classes=known, _cur_task=t)
        me._run = lambda *a, me=me: slca._run(me, *a)
        snapshots = task["snapshots"]

        def compare(i, weights, snapshots=snapshots):
            out["steps"] = _worst(out["steps"], _all_weights_diff(snapshots[i], weights))
            out["count"] += 1

        with _Steps(ref_names, compare) as steps:
            slca._stage1_training(me, loader, None)
        if len(steps.lrs) != len(task["lrs"]):
            raise AssertionError(f"SLCA ran {len(steps.lrs)} steps, ours {len(task['lrs'])}")
        out["lrs"] = _worst(out["lrs"], common.max_diff(task["lrs"], steps.lrs))
        out["groups"] += _group_mismatches(task["groups"], steps.groups)
        known += n
    steps_total = SLCA_EPOCHS * per_epoch
    what = (f"2 toy-cil tasks of 2 digits × {SLCA_IMAGES} images, batch {SLCA_BATCH}: "
            f"{SLCA_EPOCHS} epochs = {steps_total} steps, milestone epoch {SLCA_MILESTONE} = "
            f"our step {SLCA_MILESTONE * per_epoch}")
    return [
        common.Row("slca slow learner: rates", f"learning rate of both groups (tower at lr/100, "
                   f"head at lr) at each step vs `_stage1_training`'s SGD + `MultiStepLR`, {what}",
                   *out["lrs"], dtype="float64", tol=1e-18),
        common.Row("slca slow learner: groups", "settings that differ (parameters per group, "
                   "momentum, weight decay, SGD flags), count", out["groups"], dtype="count",
                   tol=0),
        common.Row("slca slow learner: data order", f"epochs that are not one pass over the "
                   f"task's images, of {out['windows'][1]}", out["windows"][0], dtype="count",
                   tol=0),
        common.Row("slca slow learner: steps", f"tower and head weights after each of "
                   f"{out['count']} SGD steps vs `_stage1_training` / `_run`, {what}",
                   *out["steps"], dtype="float32", tol=1e-7),
    ]
