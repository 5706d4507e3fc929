"""CTP momentum updates, feature queue, training steps and terms on two ranks vs ``CLIP_Pretrain``.

Reference executed: KevinLight831/CTP ``models/clip_pretrain.py``: ``CLIP_Pretrain``'s
``_momentum_update``, ``_momentum_update_three``, ``_dequeue_and_enqueue``, ``CTP_init``, ``CTP``
and ``forward``, and the module's ``concat_all_gather``, ``GatherLayer`` and
``all_gather_with_grad``, ast-extracted unchanged. The momentum updates run through the
reference's own statements that build its ``model_pairs`` (``run_statements``, from
``model_pairs = [[…`` through the update call of ``CTP_init`` and of ``CTP``). Its methods
are called on a stand-in ``self``: a float64 toy dual encoder holding the four modules the
reference's model pairs name (``visual_encoder``: MLP with LayerNorm; ``vision_proj``,
``text_proj``: linear; ``text_mlm_encoder``: embedding + linear, its masked-LM call returning no
logits), ``temp`` = 0.07, the queue buffers ``image_queue``/``text_queue`` (D, K) and
``queue_ptr``, ``queue_size`` = K, and ``get_feature`` returning the L2-normalised projected
features (as its own does). Stand-ins outside the compared mathematics: ``get_mlm_loss`` and
``distill_mlm`` give 0 (CLIP has no text decoder: a stated deviation). On one process
``dist.get_rank()`` is 0 and ``concat_all_gather``/``all_gather_with_grad`` are the identity;
on two ranks everything is the reference's own, on a real ``torch.distributed`` gloo group
(two forked processes).

Ours: ``compatible_momentum_update`` with ``CTPOptions``' default momenta, ``FeatureQueue``
(stored (K, D): compared with the reference's (D, K) tables transposed), ``clip_loss``,
``momentum_contrast_loss`` and ``topology_preservation_loss``, and the ``ctp`` strategy itself
(``CTP._begin_task``/``_terms``/``_end_task`` on the same toy model, its ``_backbone`` a
stand-in giving ``embed_dim``, ``_tasks_trained`` advanced between the tasks as the training
loop does; default dtype float64 so its queue is float64; the scale argument is unused at the
default ``contrastive_temperature``; the toy has no ``logit_scale``, which ours also averages
into the momentum model of an open_clip model and no momentum feature reads). The trainer loop
of ``train/train_CTP.py`` is re-stated, not executed: the momentum model (and, after the first
task, the previous-task model) is a copy of the model at the start of a task, the loss is the
sum of the returned terms, and the step is plain SGD (lr 0.5) on both sides.

Compared:
* momentum updates: 6 updates each of the two-model (first task) and three-model forms, the
  model moved by a random step between updates;
* queue on one process: K = 64 with B = 16 (7 enqueues) and K = 1,024 with B = 64 (20), both
  wrapping around, tables after every enqueue and the pointer;
* one training step at a time through the ``ctp`` strategy: 6 steps of the first task and 4 of
  the second (B = 8, K = 32: the queue wraps), loss, parameters, momentum model and queue after
  every step;
* two gloo ranks (B = 8 per rank, K = 64): the queue after 6 enqueues of every rank's batch
  (wrapping); ``CTP_init``/``CTP`` per rank against our terms on that rank, values and
  gradients w.r.t. the rank's raw features; and, since our momentum contrast gathers the
  momentum keys of every rank (the stated deviation), its per-rank difference and the mean of
  ours over the ranks against the reference on one process with the global batch.
"""

from __future__ import annotations

import common

NAME = "ctp-momentum"
DESCRIPTION = ("CTP momentum updates, feature queue, training steps and the terms on two gloo "
               "ranks vs CLIP_Pretrain")
REFERENCES = (common.Git("KevinLight831/CTP", "7baab57f23f0b9b552c1eb852a5c6a20208ae76e"),)
TAU = 0.07
PIXELS, WIDTH, VOCAB, LENGTH = 12, 10, 20, 5
NAMES = ["concat_all_gather", "GatherLayer", "all_gather_with_grad",
         "CLIP_Pretrain._momentum_update", "CLIP_Pretrain._momentum_update_three",
         "CLIP_Pretrain._dequeue_and_enqueue", "CLIP_Pretrain.CTP_init", "CLIP_Pretrain.CTP",
         "CLIP_Pretrain.forward"]
PAIRS_TWO = ("model_pairs = [[self.visual_encoder,momentum_model.visual_encoder],",
             "self._momentum_update(model_pairs, momentum=0.995)")
PAIRS_THREE = ("model_pairs = [[self.visual_encoder,ref_model.visual_encoder,momentum_model.",
               "self._momentum_update_three(model_pairs,momentum=0.9)")


def _reference(src, distributed: bool):
    """The reference's definitions, on a real process group or on one process."""
    from types import SimpleNamespace

    import torch
    import torch.nn.functional as F
    from torch import nn

    ns = {"torch": torch, "nn": nn, "F": F,
          "dist": torch.distributed if distributed else SimpleNamespace(get_rank=lambda: 0)}
    ref = common.load_source(src, NAMES, namespace=ns)
    if not distributed:
        ns["concat_all_gather"] = ns["all_gather_with_grad"] = lambda x: x
    return ref


def _classes(ref, dim: int):
    """(toy dual encoder, the reference's ``self`` on it) as classes of embedding size ``dim``."""
    from types import SimpleNamespace

    import torch
    import torch.nn.functional as F
    from torch import nn

    class Text(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.mix = nn.Embedding(VOCAB, WIDTH), nn.Linear(WIDTH, WIDTH)

        def forward(self, tokens=None, **mlm):
            if tokens is None:  # the reference's masked-LM call: no text decoder in CLIP
                return SimpleNamespace(logits=None)
            return self.mix(self.embed(tokens).mean(1))

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual_encoder = nn.Sequential(nn.Linear(PIXELS, WIDTH), nn.LayerNorm(WIDTH),
                                                nn.Tanh(), nn.Linear(WIDTH, WIDTH))
            self.vision_proj, self.text_proj = nn.Linear(WIDTH, dim), nn.Linear(WIDTH, dim)
            self.text_mlm_encoder = Text()
            self.double()

        def encode_image(self, images, normalize=False):
            x = self.vision_proj(self.visual_encoder(images))
            return F.normalize(x, dim=-1) if normalize else x

        def encode_text(self, tokens, normalize=False):
            x = self.text_proj(self.text_mlm_encoder(tokens))
            return F.normalize(x, dim=-1) if normalize else x

    class RefSelf(Toy):
        def set_queue(self, image, text) -> None:
            self.temp = torch.tensor(TAU, dtype=torch.float64)
            self.image_queue, self.text_queue = image.T.clone(), text.T.clone()
            self.queue_ptr, self.queue_size = torch.zeros(1, dtype=torch.long), image.shape[0]

        def get_feature(self, image, caption):
            return (self.encode_image(image, normalize=True),
                    self.encode_text(caption, normalize=True), None, None,
                    SimpleNamespace(attention_mask=None), None)

        def get_mlm_loss(self, text, image_embeds, image_atts, device):
            zero = torch.zeros((), dtype=torch.float64)
            return SimpleNamespace(loss=zero, logits=None), None, None

        def distill_mlm(self, logit_mlm, ref_logits, labels):
            return torch.zeros((), dtype=torch.float64)

    for name in NAMES[3:]:
        setattr(RefSelf, name.split(".")[1], getattr(ref, name.split(".")[1]))
    return Toy, RefSelf


def _params_diff(a, b) -> float:
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    return max(common.max_diff(p, q)[0] for p, q in pairs)


def _queue_diff(ours, ref) -> tuple[float, int]:
    """(max table difference, pointer mismatch) of a ``FeatureQueue`` and a reference ``self``."""
    d = max(common.max_diff(ours.image, ref.image_queue.T)[0],
            common.max_diff(ours.text, ref.text_queue.T)[0])
    return d, int(ours.pointer != int(ref.queue_ptr))


def _unit(g, *shape):
    import torch
    import torch.nn.functional as F

    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def _momentum(src, ref) -> list[common.Row]:
    import copy

    import torch

    from strategies.imagetext.momentum import compatible_momentum_update
    from strategies.imagetext.options import CTPOptions

    options, (_, RefSelf) = CTPOptions(), _classes(ref, 6)
    torch.manual_seed(0)
    cur, mom, prev = RefSelf(), RefSelf(), RefSelf()
    worst = {2: 0.0, 3: 0.0}
    for three in (False, True):
        ours = [copy.deepcopy(m) for m in (cur, mom, prev)]
        theirs = [copy.deepcopy(m) for m in (cur, mom, prev)]
        for _ in range(6):
            with torch.no_grad():  # the model moves (an optimizer step) between updates
                for p, q in zip(ours[0].parameters(), theirs[0].parameters()):
                    step = 0.1 * torch.randn_like(p)
                    p += step
                    q += step
            ns = {"self": theirs[0], "momentum_model": theirs[1], "ref_model": theirs[2]}
            common.run_statements(src, *(PAIRS_THREE if three else PAIRS_TWO), namespace=ns)
            if three:
                compatible_momentum_update(ours[1], ours[0], ours[2], momentum=options.momentum)
            else:
                compatible_momentum_update(ours[1], ours[0], momentum=options.first_task_momentum)
            form = 3 if three else 2
            worst[form] = max(worst[form], _params_diff(ours[1], theirs[1]))
    what = ("momentum model's parameters after each of 6 updates (toy dual encoder, model "
            "moved between updates)")
    return [
        common.Row("`compatible_momentum_update(m, model, momentum=0.995)` (ctp, first task)",
                   f"`CTP_init`'s `_momentum_update` over its `model_pairs`: {what}", worst[2],
                   tol=1e-15),
        common.Row("`compatible_momentum_update(m, model, previous, momentum=0.9)` (ctp)",
                   f"`CTP`'s `_momentum_update_three` over its `model_pairs`: {what}", worst[3],
                   tol=1e-15),
    ]


def _queue(ref) -> list[common.Row]:
    import torch

    from strategies.imagetext.momentum import FeatureQueue

    _, RefSelf = _classes(ref, 1)
    g = torch.Generator().manual_seed(1)
    worst, pointer = 0.0, 0
    for size, batch, dim, steps in ((64, 16, 16, 7), (1024, 64, 32, 20)):
        img0, txt0 = _unit(g, size, dim), _unit(g, size, dim)
        ours = FeatureQueue(size, dim)
        ours.load_state_dict({"image": img0, "text": txt0, "pointer": 0})
        theirs = RefSelf()
        theirs.set_queue(img0, txt0)
        for _ in range(steps):
            img, txt = _unit(g, batch, dim), _unit(g, batch, dim)
            ref._dequeue_and_enqueue(theirs, img, txt)
            ours.enqueue(img, txt)
            d, p = _queue_diff(ours, theirs)
            worst, pointer = max(worst, d), pointer + p
    what = "K = 64, B = 16, 7 enqueues; K = 1,024, B = 64, 20 (both wrap), one process"
    return [
        common.Row("`FeatureQueue.enqueue` (tables, (K, D))",
                   f"`_dequeue_and_enqueue` tables (D, K) transposed after every enqueue: {what}",
                   worst, tol=1e-15, note="unit-norm inputs (the reference's `get_feature`'s); "
                   "ours normalises them again"),
        common.Row("`FeatureQueue.pointer`", f"`queue_ptr` after every enqueue (count of "
                   f"mismatches): {what}", pointer, dtype="count", tol=0.0),
    ]


def _steps(ref) -> list[common.Row]:
    import copy
    from types import SimpleNamespace

    import torch

    from strategies.imagetext.ctp import CTP

    dim, batch, size, lr = 8, 8, 32, 0.5
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        Toy, RefSelf = _classes(ref, dim)
        torch.manual_seed(2)
        ours_model, theirs = Toy(), RefSelf()
        theirs.load_state_dict(ours_model.state_dict())
        strategy = CTP(batch_size=batch, queue_size=size)
        strategy._backbone = SimpleNamespace(embed_dim=dim)
        ctx = SimpleNamespace(generator=torch.Generator().manual_seed(3))
        g = torch.Generator().manual_seed(4)
        worst = {"loss": 0.0, "params": 0.0, "momentum": 0.0, "queue": 0.0, "pointer": 0}
        for task, steps in ((0, 6), (1, 4)):
            strategy._begin_task(ours_model, ctx)
            if task == 0:  # the reference's queue starts as ours
                theirs.set_queue(strategy.queue_.image, strategy.queue_.text)
            else:          # train_CTP.py, iteration > 0: copies of the model
                previous = copy.deepcopy(theirs)
            momentum = copy.deepcopy(theirs)
            for _ in range(steps):
                images = torch.randn(batch, PIXELS, generator=g)
                tokens = torch.randint(0, VOCAB, (batch, LENGTH), generator=g)
                if task == 0:
                    ref_loss = sum(theirs("CTP_init", images, tokens, momentum_model=momentum))
                else:
                    ref_loss = sum(theirs("CTP", images, tokens, ref_model=previous,
                                          momentum_model=momentum))
                terms = strategy._terms(ours_model, images, tokens,
                                        ours_model.encode_image(images, normalize=True),
                                        ours_model.encode_text(tokens, normalize=True),
                                        torch.ones(()))
                our_loss = sum(terms.values())
                for model, loss in ((ours_model, our_loss), (theirs, ref_loss)):
                    model.zero_grad()
                    loss.backward()
                    with torch.no_grad():
                        for p in model.parameters():
                            p -= lr * p.grad
                d, p = _queue_diff(strategy.queue_, theirs)
                worst["loss"] = max(worst["loss"], abs(our_loss.item() - ref_loss.item()))
                worst["params"] = max(worst["params"], _params_diff(ours_model, theirs))
                worst["momentum"] = max(worst["momentum"],
                                        _params_diff(strategy._momentum, momentum))
                worst["queue"], worst["pointer"] = max(worst["queue"], d), worst["pointer"] + p
            strategy._end_task(ctx)
            strategy._tasks_trained += 1
    finally:
        torch.set_default_dtype(default)
    what = ("6 steps of task 1 (`forward('CTP_init')`) and 4 of task 2 (`forward('CTP')`), "
            "B = 8, K = 32, SGD lr 0.5, toy dual encoder, one process")
    return [
        common.Row("`ctp` strategy: loss of a step (sum of `CTP._terms`)",
                   f"sum of the reference's returned losses: {what}", worst["loss"], tol=1e-12),
        common.Row("`ctp` strategy: parameters after each step",
                   "the reference's, after the same SGD steps on its loss", worst["params"],
                   tol=1e-12),
        common.Row("`ctp` strategy: momentum model after each step",
                   "the reference's `momentum_model`", worst["momentum"], tol=1e-12),
        common.Row("`ctp` strategy: queue tables and pointer after each step",
                   "the reference's `image_queue`/`text_queue` (transposed) and `queue_ptr` "
                   "(a pointer mismatch would be reported as inf)",
                   worst["queue"] if worst["pointer"] == 0 else float("inf"), tol=1e-12),
    ]


def _given(RefSelf):
    """The reference's ``self``/``momentum_model``/``ref_model`` on given features (the momentum
    update and the enqueue are compared above: here no-ops)."""
    from types import SimpleNamespace

    import torch.nn.functional as F

    class Given(RefSelf):
        def __init__(self, image, text) -> None:
            super().__init__()
            self.image, self.text = image, text

        def get_feature(self, image, caption):
            return (F.normalize(self.image, dim=-1), F.normalize(self.text, dim=-1), None, None,
                    SimpleNamespace(attention_mask=None), None)

        def _momentum_update(self, model_pairs, momentum):
            pass

        _momentum_update_three = _momentum_update

        def _dequeue_and_enqueue(self, image_feat, text_feat):
            pass

    return Given


def _inputs(trial: int, rows: int, dim: int, size: int) -> dict:
    """Global-batch features of one trial (the same on every rank and in the parent)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(100 + trial)
    img, txt = 2 * _unit(g, rows, dim), 3 * _unit(g, rows, dim)  # raw: not unit norm
    out = {"img": img, "txt": txt, "q_i": _unit(g, size, dim), "q_t": _unit(g, size, dim)}
    for k, s in (("mom", 0.1), ("ref", 0.3)):
        out[f"{k}_i"] = F.normalize(img + s * _unit(g, rows, dim), dim=-1)
        out[f"{k}_t"] = F.normalize(txt + s * _unit(g, rows, dim), dim=-1)
    return out


def _reference_terms(ref, Given, f, img, txt):
    """``CTP_init``'s ``loss_ita``, ``CTP``'s ``loss_ita`` and ``loss_ita_dis`` on the features
    ``f`` (this rank's rows), and the gradient of their sum w.r.t. ``img``, ``txt``."""
    import torch

    me = Given(img, txt)
    me.set_queue(f["q_i"], f["q_t"])
    init = ref.CTP_init(me, img, None, Given(f["mom_i"], f["mom_t"]))[0]
    ita, _, dis, _ = ref.CTP(me, img, None, Given(f["ref_i"], f["ref_t"]),
                             Given(f["mom_i"], f["mom_t"]))
    return (init, ita, dis), torch.cat([g.flatten() for g in
                                        torch.autograd.grad(init + ita + dis, (img, txt),
                                                                            retain_graph=True)])


BATCH, DIM, SIZE, TRIALS = 8, 16, 64, 3


def _rank(rank: int, world: int, port: int, src: str, out) -> None:
    """One gloo rank: the queue and the terms, reference and ours, on this rank's rows."""
    import os

    import torch
    import torch.nn.functional as F

    from strategies.imagetext.losses import (
        clip_loss,
        momentum_contrast_loss,
        topology_preservation_loss,
    )
    from strategies.imagetext.momentum import FeatureQueue

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ref = _reference(src, distributed=True)
        _, RefSelf = _classes(ref, DIM)
        Given = _given(RefSelf)
        rows = slice(rank * BATCH, (rank + 1) * BATCH)
        res = {"queue": 0.0, "pointer": 0, "init": 0.0, "ita": 0.0, "dis": 0.0, "grad": 0.0,
               "dev": 0.0, "global": []}
        g = torch.Generator().manual_seed(7)
        img0, txt0 = _unit(g, SIZE, DIM), _unit(g, SIZE, DIM)
        ours = FeatureQueue(SIZE, DIM)
        ours.load_state_dict({"image": img0, "text": txt0, "pointer": 0})
        theirs = RefSelf()
        theirs.set_queue(img0, txt0)
        for _ in range(6):  # global batch 16, K = 64: wraps after 4
            img, txt = _unit(g, world * BATCH, DIM), _unit(g, world * BATCH, DIM)
            ref._dequeue_and_enqueue(theirs, img[rows], txt[rows])
            ours.enqueue(img[rows], txt[rows], rank=rank, world_size=world)
            d, p = _queue_diff(ours, theirs)
            res["queue"], res["pointer"] = max(res["queue"], d), res["pointer"] + p
        for trial in range(TRIALS):
            f = {k: v if k.startswith("q_") else v[rows]
                 for k, v in _inputs(trial, world * BATCH, DIM, SIZE).items()}
            img, txt = f["img"].clone().requires_grad_(True), f["txt"].clone().requires_grad_(True)
            (r_init, r_ita, r_dis), r_grad = _reference_terms(ref, Given, f, img, txt)
            scale = torch.tensor(1 / TAU, dtype=torch.float64)
            contrast = clip_loss(rank=rank, world_size=world)(
                F.normalize(img, dim=-1), F.normalize(txt, dim=-1), scale)
            topology = topology_preservation_loss(img, txt, f["ref_i"], f["ref_t"],
                                                  temperature=TAU, rank=rank, world_size=world)
            mc = {w: momentum_contrast_loss(img, txt, f["mom_i"], f["mom_t"], f["q_i"], f["q_t"],
                                            temperature=TAU, rank=rank if w > 1 else 0,
                                            world_size=w) for w in (1, world)}
            o_init, o_dis = contrast + mc[1], mc[1] + topology
            o_grad = torch.cat([x.flatten() for x in torch.autograd.grad(
                o_init + contrast + o_dis, (img, txt), retain_graph=True)])
            for k, a, b in (("init", o_init, r_init), ("ita", contrast, r_ita),
                            ("dis", o_dis, r_dis), ("grad", o_grad, r_grad)):
                res[k] = max(res[k], common.max_diff(a, b)[0])
            w_init, w_dis = contrast + mc[world], mc[world] + topology  # what the strategy sums
            res["dev"] = max(res["dev"], common.max_diff(w_init, r_init)[0],
                             common.max_diff(w_dis, r_dis)[0])
            gi, gt = torch.autograd.grad(w_init + w_dis, (img, txt))
            res["global"].append((w_init.item(), w_dis.item(), gi.numpy(), gt.numpy()))
        out[rank] = res
    finally:
        torch.distributed.destroy_process_group()


def _two_ranks(src, one) -> list[common.Row]:
    import socket

    import numpy as np
    import torch
    import torch.multiprocessing as mp

    world = 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.Manager()
    try:
        out = manager.dict()
        mp.start_processes(_rank, args=(world, port, str(src), out), nprocs=world, join=True,
                           start_method="fork")
        res = [out[r] for r in range(world)]
    finally:
        manager.shutdown()
    # ours on two ranks (mean over the ranks; gradients averaged as DDP averages them) vs the
    # reference on one process with the global batch
    Given = _given(_classes(one, DIM)[1])
    glob = {"value": 0.0, "grad": 0.0}
    for trial in range(TRIALS):
        f = _inputs(trial, world * BATCH, DIM, SIZE)
        img, txt = f["img"].clone().requires_grad_(True), f["txt"].clone().requires_grad_(True)
        (r_init, _, r_dis), _ = _reference_terms(one, Given, f, img, txt)
        r_gi, r_gt = torch.autograd.grad(r_init + r_dis, (img, txt))
        ours = [res[r]["global"][trial] for r in range(world)]
        glob["value"] = max(glob["value"], abs(np.mean([o[0] for o in ours]) - r_init.item()),
                            abs(np.mean([o[1] for o in ours]) - r_dis.item()))
        o_gi = np.concatenate([o[2] for o in ours]) / world
        o_gt = np.concatenate([o[3] for o in ours]) / world
        glob["grad"] = max(glob["grad"], common.max_diff(o_gi, r_gi)[0],
                           common.max_diff(o_gt, r_gt)[0])
    worst = {k: max(r[k] for r in res) for k in ("queue", "init", "ita", "dis", "grad", "dev")}
    pointer = sum(r["pointer"] for r in res)
    what = (f"2 gloo ranks × B = {BATCH}, D = {DIM}, K = {SIZE}, {TRIALS} draws, the reference's "
            "own `concat_all_gather`/`all_gather_with_grad`/`dist.get_rank()`")
    return [
        common.Row("`FeatureQueue.enqueue(rank=r, world_size=2)`",
                   "`_dequeue_and_enqueue` on each rank (tables transposed, pointer), 6 enqueues "
                   "of a global batch of 16 into K = 64 (wraps)",
                   worst["queue"] if pointer == 0 else float("inf"), tol=1e-15,
                   note="a pointer mismatch would be reported as inf"),
        common.Row("`clip_loss(rank, world_size=2)` at scale 1/τ (ctp)",
                   f"`CTP` `loss_ita` on each rank: {what}", worst["ita"], tol=1e-12),
        common.Row("`clip_loss` + `momentum_contrast_loss` on this rank's momentum keys (world "
                   "size 1)", f"`CTP_init` `loss_ita` on each rank: {what}", worst["init"],
                   tol=1e-12),
        common.Row("`momentum_contrast_loss` (this rank's keys) + `topology_preservation_loss("
                   "rank, world_size=2)`", f"`CTP` `loss_ita_dis` on each rank: {what}",
                   worst["dis"], tol=1e-12),
        common.Row("the terms above on two ranks", "gradients of their sum w.r.t. each rank's "
                   "raw features (through the reference's `GatherLayer`)", worst["grad"],
                   tol=1e-12),
        common.Row("as the `ctp` strategy calls them on two ranks: `momentum_contrast_loss("
                   "rank, world_size=2)` (every rank's momentum keys)",
                   "`CTP_init` `loss_ita` and `CTP` `loss_ita_dis` on each rank",
                   worst["dev"], tol=float("inf"),
                   note="stated deviation (several ranks): reported, not bounded"),
        common.Row("the same, mean over the two ranks (gradients averaged over ranks)",
                   "`CTP_init` `loss_ita` and `CTP` `loss_ita_dis` on one process with the "
                   "global batch of 16: values", glob["value"], tol=1e-12),
        common.Row("the same, gradients", "the one-process reference's gradients w.r.t. the "
                   "global batch's raw features", glob["grad"], tol=1e-12),
    ]


def run(refs: common.Refs) -> list[common.Row]:
    src = refs.path(REFERENCES[0]) / "models" / "clip_pretrain.py"
    one = _reference(src, distributed=False)
    return _momentum(src, one) + _queue(one) + _steps(one) + _two_ranks(src, one)
