"""``engine``: ENGINE (Zhou et al., "External Knowledge Injection for CLIP-Based Class-Incremental
Learning", ICCV 2025).

Reference: LAMDA-CL/ICCV25-ENGINE @ 8803d66de74d6c24f9300b8f9ad93c13b6de98bf
(``models/engine.py``, ``utils/inc_net.py: Engine``, ``utils/loss.py``).

Training (``Learner.train``): each task adds a linear image adapter and a
linear text adapter (old ones frozen; features are the sums of all adapters).
Loss per batch: the CLIP contrastive loss between adapted images and the
adapted text ``template(label)`` of each image, plus ``text_des ·`` the
contrastive loss between those texts and CLIP's embedding of ``"<class> with
<random descriptor>"`` (dual-branch *text* injection, from the descriptor
file). From the second task on, each old class's prototype (mean frozen
feature) plus Gaussian noise (``sample_noise``) is appended to every batch
(prototype replay; ``sample_num = 0``: all old classes, one each).

Prediction (``_eval_cnn``): ``stat · norm(g) + (1 − stat) · (rerank · r + (1 −
rerank) · o)``, with ``o`` the cosine of adapted image and template-averaged
adapted text, ``g`` the logits of a GDA head (shared covariance, KS
shrinkage, uniform priors: :class:`strategies.GDA` with ``shrinkage="ks"``)
L2-normalised over classes, and ``r`` the descriptor re-ranking: for the
``rerank_top`` best classes of ``o``, the image's cosine with the mean of
``"<class> with <descriptor of class vs. rival>"`` over the other top classes
(three random draws averaged); 0 elsewhere.

Descriptors: a JSON file in the reference's format (``chat/<dataset>_des.json``):
``{class: {other class: [descriptor, ...], ...}, ...}``. Without a file the
text-injection loss and the re-ranking are off (``text_des`` and ``rerank``
act as 0) and a warning says so: what remains is the adapters, prototype
replay and the GDA head.

Deviations (feature cache): the image-branch injection (a contrastive loss
against the frozen encoder's features of noise-augmented *pixels*) needs
images and is not run; the GDA head uses the cache's projected, normalised
features (the reference uses the 768-d pre-projection token); its shared
covariance is the exact pooled within-class covariance of all seen classes
(:class:`strategies.GDA`'s Chan merge), where the reference mixes the old and
new *precision* matrices by class counts (``update_stat``); the two agree
after the first task (``experiments/fidelity/cil.py``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cl.core.strategy import Context, TaskData
from strategies.cil.common import (
    CILStrategy,
    clip_contrastive_loss,
    embed_texts,
    minibatches,
    module_bytes,
    tensor_bytes,
)
from strategies.estimators import GDA


def load_descriptors(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """Read a descriptor file in ENGINE's format; ``ValueError`` naming the problem otherwise."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"descriptor file {str(p)!r} does not exist; give a JSON file "
                                "like ENGINE's chat/cifar224_des.json.")
    raw = json.loads(p.read_text())
    if not isinstance(raw, dict) or not all(
            isinstance(v, dict) and all(isinstance(d, list) for d in v.values())
            for v in raw.values()):
        raise ValueError(f"descriptor file {str(p)!r} must map class -> {{other class -> "
                         "[descriptors]}} (ENGINE's format).")
    return raw


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """``CE(logits, arange)``: ENGINE's one-directional contrastive loss (``utils/loss.py``)."""
    return F.cross_entropy(logits, torch.arange(len(logits)))


def rerank_scores(out: torch.Tensor, x: torch.Tensor, names: list[str],
                  descriptors: dict[str, dict[str, list[str]]],
                  encode: Callable[[list[str]], torch.Tensor], top: int,
                  rng: random.Random) -> torch.Tensor:
    """ENGINE's descriptor re-ranking (``Engine.rerank``): scores (N, C), 0 outside each top-k.

    For the ``k`` best classes of ``out`` (N, C), the cosine of the normalised image ``x``
    (N, D) with the normalised mean, over the other top classes ``b``, of the embedding of
    ``"<a> with <random descriptor of a against b>"``; averaged over three random draws.
    ``encode`` embeds a list of texts (T, D).
    """
    k = min(top, out.shape[1])
    best = out.topk(k, 1).indices
    total = torch.zeros(len(x), k, dtype=x.dtype)
    for _ in range(3):
        texts = [f"{names[a]} with {rng.choice(descriptors[names[a]][names[b]]).lower()}"
                 for row in best.tolist() for a in row for b in row if a != b]
        emb = encode(texts).to(x.dtype).reshape(len(x), k, k - 1, -1).mean(2)
        total += torch.einsum("nd,nkd->nk", x, F.normalize(emb, dim=-1))
    rr = torch.zeros_like(out)
    rr.scatter_(1, best, total / 3)
    return rr


class EngineNet(nn.Module):
    """Growing sums of linear image and text adapters (``Image_encode`` / ``Text_encode``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.image_adapters = nn.ModuleList()
        self.text_adapters = nn.ModuleList()

    def update_task(self) -> None:
        for m in (*self.image_adapters, *self.text_adapters):
            m.requires_grad_(False)
        self.image_adapters.append(nn.Linear(self.dim, self.dim))
        self.text_adapters.append(nn.Linear(self.dim, self.dim))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([a(x) for a in self.image_adapters]).sum(0)

    def encode_text(self, t: torch.Tensor) -> torch.Tensor:
        return torch.stack([a(t) for a in self.text_adapters]).sum(0)


class ENGINE(CILStrategy):
    """ENGINE on cached CLIP features (see the module docstring).

    Parameters
    ----------
    epochs : int
        Reference: 10.
    batch_size : int
        Reference: 64.
    lr : float
        SGD (momentum 0.9) learning rate with a cosine schedule (reference: 0.05).
    weight_decay, min_lr : float
    text_des : float
        Weight of the descriptor (text injection) loss (reference: 2).
    sample_noise : float
        Std of the noise added to replayed prototypes (reference: 0.25).
    stat : float
        Weight of the GDA head at test time (reference: 0.8).
    rerank : float
        Weight of the descriptor re-ranking (reference: 0.5 CIFAR-100, 0.8 ImageNet-R).
    rerank_top : int
        Classes re-ranked per image (reference: 5).
    descriptors : str or None
        Path of the descriptor JSON (ENGINE's format). ``None``: no text injection, no re-ranking.
    template : str
        Prompt of the training texts (the reference trains with its first template).
    loss_scale : float
        Scale of the contrastive loss. The reference passes CLIP's ``logit_scale``
        *parameter* without ``exp()``: ``ln 100 ≈ 4.6052`` for the released CLIP weights.
    """

    def __init__(self, *, epochs: int = 10, batch_size: int = 64, lr: float = 0.05,
                 weight_decay: float = 0.05, min_lr: float = 0.0, text_des: float = 2.0,
                 sample_noise: float = 0.25, stat: float = 0.8, rerank: float = 0.5,
                 rerank_top: int = 5, descriptors: str | None = None,
                 template: str = "a photo of a {}.", loss_scale: float = 4.6052) -> None:
        self._init_common(epochs=epochs, batch_size=batch_size, lr=lr)
        for name, v in (("stat", stat), ("rerank", rerank)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {v}.")
        if rerank_top < 2:
            raise ValueError(f"rerank_top must be >= 2, got {rerank_top}.")
        self.weight_decay, self.min_lr = float(weight_decay), float(min_lr)
        self.text_des, self.sample_noise = float(text_des), float(sample_noise)
        self.stat, self.rerank, self.rerank_top = float(stat), float(rerank), int(rerank_top)
        self.template, self.loss_scale = template, float(loss_scale)
        self.descriptors_path = descriptors
        self.descriptors = None if descriptors is None else load_descriptors(descriptors)
        self.gda = GDA(shrinkage="ks", priors="uniform", solver="pinv")
        self.net: EngineNet | None = None
        self.prototypes = torch.zeros(0, 0)
        self._warned = False

    # -- descriptors ------------------------------------------------------------------
    def _has_descriptors(self, ctx: Context) -> bool:
        if self.descriptors is None:
            if not self._warned:
                ctx.logger.warning(
                    "engine: no descriptor file given (option 'descriptors'); the text-injection "
                    "loss and the descriptor re-ranking are off, so this is ENGINE without its "
                    "external knowledge (adapters, prototype replay and the GDA head remain).")
                self._warned = True
            return False
        missing = [n for n in self.class_names if n not in self.descriptors]
        if missing:
            raise ValueError(f"descriptor file {self.descriptors_path!r} has no entry for class "
                             f"{missing[0]!r}; it needs one per class name of the stream.")
        return True

    def _flat(self, name: str) -> list[str]:
        assert self.descriptors is not None
        return [d for ds in self.descriptors[name].values() for d in ds]

    # -- training ---------------------------------------------------------------------
    def train_task(self, data: TaskData, ctx: Context) -> None:
        x, y = self._check_features(data, ctx)
        new = self._add_classes(y, ctx)
        if self.net is None:
            self.net = EngineNet(x.shape[1])
            self.prototypes = torch.zeros(0, x.shape[1])
        net = self.net
        net.update_task()
        self.gda.partial_fit(x.double().numpy(), y.numpy())
        use_des = self._has_descriptors(ctx) and self.text_des > 0
        rng = random.Random(int(torch.randint(2**31 - 1, (1,), generator=ctx.generator)))
        text_raw = self._seen_text(ctx, self.template)
        yl = self._local(y)
        n_old = len(self.prototypes)
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs, eta_min=self.min_lr)
        for _ in range(self.epochs):
            order = torch.randperm(n_old, generator=ctx.generator)
            for idx in minibatches(len(x), self.batch_size, ctx.generator):
                feats, targets = x[idx], yl[idx]
                replay = None
                if n_old:
                    noise = torch.randn(n_old, x.shape[1], generator=ctx.generator)
                    replay = self.prototypes[order] + noise * self.sample_noise
                    targets = torch.cat([targets, order])
                ref = None
                if use_des:
                    ref = embed_texts(ctx, [f"{self.class_names[t]} with "
                                            f"{rng.choice(self._flat(self.class_names[t])).lower()}"
                                            for t in targets.tolist()])
                loss = self.loss(net, feats, replay, targets, text_raw, ref, self.text_des,
                                 self.loss_scale)
                opt.zero_grad()
                loss.backward()
                opt.step()
                ctx.count("examples_seen", len(idx))
            sched.step()
        self.prototypes = torch.cat([self.prototypes] + [x[y == c].mean(0, keepdim=True)
                                                         for c in new])
        self.trained += 1
        ctx.record("exemplars", 0)
        ctx.record("descriptors", self.descriptors_path)

    @staticmethod
    def loss(net: EngineNet, x: torch.Tensor, replay: torch.Tensor | None, targets: torch.Tensor,
             text_raw: torch.Tensor, ref: torch.Tensor | None, text_des: float,
             scale: float) -> torch.Tensor:
        """ENGINE's loss of a batch: features x (B, D), replayed prototypes (R, D) or None,
        seen-class positions ``targets`` (B + R,), class texts (C, D), descriptor texts (B + R, D)."""
        img = F.normalize(net.encode_image(x), dim=-1)
        if replay is not None:
            img = torch.cat([img, F.normalize(net.encode_image(replay), dim=-1)])
        label_text = F.normalize(net.encode_text(text_raw[targets]), dim=-1)
        loss = clip_contrastive_loss(img, label_text, scale)
        if ref is not None:
            loss = loss + text_des * contrastive_loss(label_text @ ref.T)
        return loss

    # -- prediction -------------------------------------------------------------------
    def _scores(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        assert self.net is not None
        per_template = F.normalize(self.net.encode_text(torch.stack(self._template_texts(ctx))), dim=-1)
        text = F.normalize(per_template.mean(0), dim=-1)
        out = F.normalize(self.net.encode_image(x), dim=-1) @ text.T
        pos = np.searchsorted(self.gda.classes_, np.asarray(self.class_ids))
        gda = torch.from_numpy(self.gda.trusted_class_scores(x.double().numpy(), pos)).float()
        rr = torch.zeros_like(out)
        rerank = self.rerank if self._has_descriptors(ctx) else 0.0
        if rerank > 0:
            rr = self._rerank(out, x, ctx)
        return self.combine(out, gda, rr, self.stat, rerank)

    @staticmethod
    def combine(out: torch.Tensor, gda: torch.Tensor, rr: torch.Tensor, stat: float,
                rerank: float) -> torch.Tensor:
        """``stat·norm(gda) + (1 − stat)·(rerank·rr + (1 − rerank)·out)`` (reference ``_eval_cnn``)."""
        return stat * F.normalize(gda, dim=-1) + (1 - stat) * (rerank * rr + (1 - rerank) * out)

    def _rerank(self, out: torch.Tensor, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        assert self.descriptors is not None
        rng = random.Random(ctx.seed * 1000 + self.trained)
        return rerank_scores(out, x, self.class_names, self.descriptors,
                             lambda texts: embed_texts(ctx, texts), self.rerank_top, rng)

    def trainable_parameters(self) -> int:
        return 0 if self.net is None else sum(p.numel() for p in self.net.parameters()
                                              if p.requires_grad)

    def memory_bytes(self) -> int:
        if self.net is None:
            return 0
        stats = sum(v.nbytes for v in self.gda.get_statistics().values()
                    if isinstance(v, np.ndarray))
        return module_bytes(self.net) + tensor_bytes(self.prototypes) + int(stats)

    def state_dict(self) -> dict[str, Any]:
        state = self._common_state()
        if self.net is not None:
            state |= {"dim": self.net.dim, "net": self.net.state_dict(),
                      "prototypes": self.prototypes,
                      "gda": {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                              for k, v in self.gda.get_statistics().items()}}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_common(state)
        self.net = None
        if "net" in state:
            self.net = EngineNet(int(state["dim"]))
            for _ in range(self.trained):
                self.net.update_task()
            self.net.load_state_dict(state["net"])
            self.prototypes = state["prototypes"]
            self.gda.set_statistics({k: v.numpy() if isinstance(v, torch.Tensor) else v
                                     for k, v in state["gda"].items()})
