"""``proof``: PROOF (Zhou et al., "Learning without Forgetting for Vision-Language Models", TPAMI 2025).

Reference: zhoudw-zdw/PROOF @ 0bb20520a726ebf3ca8b0c32168d5d4c1f59f3b7
(``models/proof.py``, ``utils/inc_net.py: Proof_Net``, ``convs/projections.py``).

Per task, a new linear image projection and a new linear text projection are
added (image and text features are the *sums* of all projections); old image
projections are frozen, every text projection and the fusion module keep
training (the reference's ``freeze_projection_weight_new``). A task also adds
``context_prompt_length_per_task`` context prompts (old ones frozen). The
cross-modal fusion is one single-head self-attention block (residual +
LayerNorm, dropout 0.1) over the sequence ``[image, texts of the seen classes,
projected class prototypes, context prompts]``; its outputs give the fused
image, text and prototype features (``Proof_Net.forward_transformer``). Loss per batch
(``Learner._train_proj``): ``CE(fused image · fused textsᵀ) + CLIP contrastive(projected
image, projected text of its label) + CE(fused image · fused prototypesᵀ)``.
Prediction sums ``projected image · projected textᵀ``, ``fused image · fused
textᵀ`` and ``fused image · fused prototypeᵀ``. Exemplar memory: PyCIL's
budget (2,000 in total by default), herding on the frozen CLIP features.

Deviations (all because this runs on the feature cache):
- projections act on the cache's L2-normalised CLIP embeddings (the reference
  feeds un-normalised ``encode_image``/``encode_text`` outputs); prototypes are
  means of normalised features in both;
- no image augmentation (the reference's CIFAR/ImageNet-R training transforms).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from cl.core.strategy import Context, TaskData
from strategies.cil.common import (
    CILStrategy,
    ExemplarMemory,
    clip_contrastive_loss,
    minibatches,
    module_bytes,
)


class FusionAttention(nn.Module):
    """One-head self-attention with residual and LayerNorm (Vaswani et al. 2017, Eq. 1).

    ``out = LayerNorm(q + Dropout(W_o · softmax(q W_q (k W_k)ᵀ / √d) v W_v))`` on
    sequences (B, L, D); initialisation as PROOF's ``MultiHeadAttention``:
    ``N(0, √(2/(2D)))`` for the projections, Xavier-normal for ``W_o``.
    """

    def __init__(self, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dim = dim
        self.w_qs = nn.Linear(dim, dim, bias=False)
        self.w_ks = nn.Linear(dim, dim, bias=False)
        self.w_vs = nn.Linear(dim, dim, bias=False)
        for lin in (self.w_qs, self.w_ks, self.w_vs):
            nn.init.normal_(lin.weight, mean=0.0, std=math.sqrt(2.0 / (2 * dim)))
        self.fc = nn.Linear(dim, dim)
        nn.init.xavier_normal_(self.fc.weight)
        self.attn_dropout = nn.Dropout(dropout)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        q, k, v = self.w_qs(seq), self.w_ks(seq), self.w_vs(seq)
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.dim), dim=2)
        out = self.attn_dropout(attn) @ v
        return self.layer_norm(self.dropout(self.fc(out)) + seq)


class ProofNet(nn.Module):
    """Growing projections, context prompts and the fusion module over D-dim CLIP features."""

    def __init__(self, dim: int, prompts_per_task: int) -> None:
        super().__init__()
        self.dim, self.prompts_per_task = dim, prompts_per_task
        self.projs_img = nn.ModuleList()
        self.projs_text = nn.ModuleList()
        self.context_prompts = nn.ParameterList()
        self.sel_attn = FusionAttention(dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(100.0)))
        self.register_buffer("prototypes", torch.zeros(0, dim))

    def extend_task(self, generator: torch.Generator) -> None:
        """Add a task's projections and context prompts; freeze old image projections and prompts."""
        for p in self.context_prompts:
            p.requires_grad_(False)
        self.context_prompts.append(nn.Parameter(
            torch.randn(self.prompts_per_task, self.dim, generator=generator)))
        self.projs_img.append(nn.Linear(self.dim, self.dim))
        self.projs_text.append(nn.Linear(self.dim, self.dim))
        for proj in self.projs_img[:-1]:
            proj.requires_grad_(False)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([p(x) for p in self.projs_img], 1).sum(1)

    def encode_text(self, t: torch.Tensor) -> torch.Tensor:
        return torch.stack([p(t) for p in self.projs_text], 1).sum(1)

    def fuse(self, image: torch.Tensor, text: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fused image (B, D), texts (C, D) and prototypes (C, D) (``forward_transformer``)."""
        protos = F.normalize(self.encode_image(self.prototypes), dim=-1)
        prompts = torch.cat(list(self.context_prompts), 0)
        b = image.shape[0]
        seq = torch.cat([image[:, None], text.expand(b, -1, -1), protos.expand(b, -1, -1),
                         prompts.expand(b, -1, -1)], 1)
        out = self.sel_attn(seq)
        c = text.shape[0]
        return out[:, 0], out[:, 1:c + 1].mean(0), out[:, c + 1:c + 1 + len(protos)].mean(0)


class PROOF(CILStrategy):
    """PROOF on cached CLIP features (see the module docstring).

    Parameters
    ----------
    epochs : int
        Epochs per task (reference: 5 on CIFAR-100, 10 on ImageNet-R).
    batch_size : int
        Reference: 64 (CIFAR-100), 48 (ImageNet-R).
    lr : float
        SGD learning rate, momentum 0.9, cosine schedule to ``min_lr`` per task.
    weight_decay, min_lr : float
    prompts_per_task : int
        Context prompts added per task (reference: 3).
    memory_size : int
        Total exemplar budget (reference: 2,000 on CIFAR-100, 4,000 on ImageNet-R).
    memory_per_class : int or None
        Fixed exemplars per class instead of a total budget.
    selection : {"herding", "random"}
        Exemplar selection (reference: herding).
    template : str
        Prompt of the training texts (the reference trains with its first template).
    """

    def __init__(self, *, epochs: int = 5, batch_size: int = 64, lr: float = 1e-3,
                 weight_decay: float = 0.05, min_lr: float = 0.0, prompts_per_task: int = 3,
                 memory_size: int = 2000, memory_per_class: int | None = None,
                 selection: Literal["herding", "random"] = "herding",
                 template: str = "a photo of a {}.") -> None:
        self._init_common(epochs=epochs, batch_size=batch_size, lr=lr)
        if prompts_per_task < 1:
            raise ValueError(f"prompts_per_task must be >= 1, got {prompts_per_task}.")
        if "{}" not in template:
            raise ValueError(f"template needs a '{{}}' slot for the class name, got {template!r}.")
        self.weight_decay, self.min_lr = float(weight_decay), float(min_lr)
        self.prompts_per_task, self.template = int(prompts_per_task), template
        self.memory = ExemplarMemory(memory_size, memory_per_class, selection)
        self.net: ProofNet | None = None

    def _build(self, dim: int) -> ProofNet:
        if self.net is None:
            self.net = ProofNet(dim, self.prompts_per_task)
        return self.net

    def train_task(self, data: TaskData, ctx: Context) -> None:
        x, y = self._check_features(data, ctx)
        new = self._add_classes(y, ctx)
        net = self._build(x.shape[1])
        protos = torch.stack([F.normalize(x[y == c], dim=-1).mean(0) for c in new])
        net.prototypes = torch.cat([net.prototypes, protos])
        net.extend_task(ctx.generator)
        train_x = torch.cat([x, self.memory.features]) if len(self.memory) else x
        train_y = self._local(torch.cat([y, self.memory.targets]) if len(self.memory) else y)
        text_raw = self._seen_text(ctx, self.template)
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs, eta_min=self.min_lr)
        net.train()
        for _ in range(self.epochs):
            for idx in minibatches(len(train_x), self.batch_size, ctx.generator):
                loss = self.loss(net, train_x[idx], train_y[idx], text_raw)
                opt.zero_grad()
                loss.backward()
                opt.step()
                ctx.count("examples_seen", len(idx))
            sched.step()
        net.eval()
        self.memory.update(x, y, len(self.class_ids), ctx.generator)
        self.trained += 1
        ctx.record("exemplars", len(self.memory))

    @staticmethod
    def loss(net: ProofNet, x: torch.Tensor, y: torch.Tensor, text_raw: torch.Tensor
             ) -> torch.Tensor:
        """PROOF's training loss of a batch (features x (B, D), seen-class positions y (B,))."""
        text = F.normalize(net.encode_text(text_raw), dim=-1)
        img = F.normalize(net.encode_image(x), dim=-1)
        f_img, f_text, f_proto = net.fuse(img, text)
        ce = F.cross_entropy(f_img @ f_text.T, y)
        contrastive = clip_contrastive_loss(img, text[y], net.logit_scale.exp())
        proto = F.cross_entropy(f_img @ f_proto.T, y)
        return ce + contrastive + proto

    def _scores(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        assert self.net is not None
        return self.scores(self.net, x, torch.stack(self._template_texts(ctx)))

    @staticmethod
    def scores(net: ProofNet, x: torch.Tensor, text_raw: torch.Tensor) -> torch.Tensor:
        """Prediction of the reference's ``_eval_cnn``: x (N, D), per-template texts (T, C, D)."""
        text = F.normalize(net.encode_text(text_raw), dim=-1).mean(0)
        text = F.normalize(text, dim=-1)
        img = net.encode_image(x)
        f_img, f_text, f_proto = net.fuse(img, text)
        return img @ text.T + f_img @ f_text.T + f_img @ f_proto.T

    def trainable_parameters(self) -> int:
        return 0 if self.net is None else sum(p.numel() for p in self.net.parameters()
                                              if p.requires_grad)

    def memory_bytes(self) -> int:
        return (0 if self.net is None else module_bytes(self.net)) + self.memory.nbytes()

    def state_dict(self) -> dict[str, Any]:
        state = self._common_state() | {"memory": self.memory.state_dict()}
        if self.net is not None:
            state["dim"] = self.net.dim
            state["net"] = self.net.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_common(state)
        self.memory.load_state_dict(state["memory"])
        self.net = None
        if "net" in state:
            net = self._build(int(state["dim"]))
            for _ in range(self.trained):
                net.extend_task(torch.Generator())
            net.prototypes = torch.zeros_like(state["net"]["prototypes"])
            net.load_state_dict(state["net"])
            net.eval()


