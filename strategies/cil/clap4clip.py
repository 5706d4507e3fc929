"""``clap4clip``: CLAP4CLIP (Jha et al., "CLAP4CLIP: Continual Learning with Probabilistic Finetuning
for Vision-Language Models", NeurIPS 2024).

Reference: srvCodes/clap4clip @ 7ff95c2894c22ce141f8df06301bed9620a40bf7
(``classifier/continual_clip_variational.py``), with the flags of its
``scripts/runner_clip_var_all_datasets.sh``: ``--variational --use-vga
--expandable-adapter --lasp --beta 15 --finetuning --finetune-epochs 1
--forward-times 20 --exemplar-selector random --method er``.

Model (the paper's method section; the reference's ``CLIP.forward``): the hand-crafted prompts' text embeddings ``t_c``
(template-averaged, frozen) are the queries of a visual-guided attention
module (``vga``: one ``nn.TransformerDecoder`` layer, one head, GELU) whose
memory is the batch's normalised image features; a block-diagonal mask keeps
each class attending to the classes of its own task. Task ``i`` owns a
variational adapter pair ``(μ_i, σ_i)`` (linear, ``σ = 0.999·softplus + 0.001``);
for its classes ``u = t + vga(t)``, ``q_i = N(μ_i(u), σ_i(u))`` and ``M``
Monte-Carlo samples ``z ~ q_i`` give logits ``s · x · (u + z)ᵀ`` (M, B, C_i).
New adapters are initialised from the text embeddings (``init_new_heads``);
old ones are frozen while a new task trains.

Loss (``fit``, on the task's data plus the exemplar memory, ``--method er``):
cross-entropy of all ``M`` sample logits, plus for the current
task ``0.001 · KL(q_i ‖ N(0, I))`` (summed over classes and dimensions, mean
over nothing else) and the LASP regulariser ``β · CE(mean_{r,k} T_k z_rᵀ, arange)``
with ``T_k`` the per-template text embeddings. After each task the exemplar
memory (random selection) is updated and the model is fine-tuned on it
(class-balanced, ``lr / 10``, all adapters trainable, KL and LASP for every task).
Prediction averages the logits of ``forward_times`` samples; as in the
reference, the VGA context is the *test batch*, so logits depend on the batch.

Deviations: runs on the feature cache (no image augmentation); Monte-Carlo
draws come from seeded generators; SGD with a per-step cosine schedule as the
reference, without its warm-up (off in the reference runs).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions.kl import kl_divergence
from torch.distributions.normal import Normal

from cl.core.strategy import Context, TaskData
from strategies.cil.common import CILStrategy, ExemplarMemory, minibatches, module_bytes


class VariationalAdapter(nn.Module):
    """Mean and scale heads of one task: ``μ(u) = W_μ u + b``, ``σ(u) = 0.999·softplus(W_σ u + b) + 0.001``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mu = nn.Linear(dim, dim)
        self.sigma = nn.Linear(dim, dim)

    def init_from_text(self, per_template: torch.Tensor) -> None:
        """``init_new_heads``: weights ``EᵀE / D`` of the template mean (μ) and variance (σ), (C, T, D)."""
        with torch.no_grad():
            for lin, e in ((self.mu, per_template.mean(1)), (self.sigma, per_template.var(1))):
                lin.weight.copy_(e.T @ e / e.shape[1])

    def forward(self, u: torch.Tensor) -> Normal:
        return Normal(self.mu(u), F.softplus(self.sigma(u)) * 0.999 + 0.001)


class Clap4ClipNet(nn.Module):
    """VGA module and the per-task variational adapters."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        layer = nn.TransformerDecoderLayer(d_model=dim, nhead=1, activation="gelu",
                                           batch_first=True)
        self.vga = nn.TransformerDecoder(layer, 1)
        self.adapters = nn.ModuleList()
        self.dim = dim

    def block_mask(self, task_sizes: list[int]) -> torch.Tensor:
        """(C, C) bool mask, True where a class may *not* attend (other tasks' classes)."""
        c = sum(task_sizes)
        mask = torch.ones(c, c, dtype=torch.bool)
        start = 0
        for n in task_sizes:
            mask[start:start + n, start:start + n] = False
            start += n
        return mask

    def forward(self, x: torch.Tensor, text: torch.Tensor, task_sizes: list[int], samples: int,
                generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, list[Normal], list[torch.Tensor]]:
        """Logits (M, B, C) of features x (B, D) over the seen classes' texts (C, D).

        Also returns each task's posterior ``q_i`` and its samples (M, C_i, D).
        """
        vga = self.vga(text[None], x[None], tgt_mask=self.block_mask(task_sizes))[0]
        logits, dists, draws = [], [], []
        start = 0
        for i, n in enumerate(task_sizes):
            u = text[start:start + n] + vga[start:start + n]
            q = self.adapters[i](u)
            eps = torch.randn((samples, *u.shape), generator=generator, dtype=u.dtype)
            z = q.loc + q.scale * eps  # reparameterised draw (Normal.rsample with given noise)
            logits.append(100.0 * x @ (u + z).transpose(1, 2))
            dists.append(q)
            draws.append(z)
            start += n
        return torch.cat(logits, -1), dists, draws


def lasp_loss(per_template: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """LASP regulariser of one task: ``CE(mean_{r,k} T[:, k] · z_rᵀ, arange)``; T (C, K, D), z (M, C, D)."""
    sims = torch.einsum("ckd,mjd->mckj", per_template, z).mean(2).mean(0)
    return F.cross_entropy(sims, torch.arange(sims.shape[0]))


def prior_kl(q: Normal) -> torch.Tensor:
    """``KL(q ‖ N(0, I)).mean(0).sum() · 0.001`` (the reference's ``prior_matching_losses`` term)."""
    p = Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
    return kl_divergence(q, p).mean(0).sum() * 0.001


class CLAP4CLIP(CILStrategy):
    """CLAP4CLIP on cached CLIP features (see the module docstring).

    Parameters
    ----------
    epochs : int
        Epochs per task (reference runs: 1; its parser default: 5).
    finetune_epochs : int
        Class-balanced fine-tuning epochs on the memory after each task (reference: 1; 0: off).
    batch_size : int
        Reference: 32.
    lr : float
        Base rate; the SGD rate is ``lr · batch_size / 20`` as in the reference (1e-3).
    forward_times : int
        Monte-Carlo samples in training and at inference (reference: 20).
    beta : float
        LASP weight (reference: 15).
    memory_size, memory_per_class, selection :
        Exemplar memory, replayed with each task's data and used for the fine-tuning
        (reference: random selection; 2,000 in total on CIFAR-100, 20 per class otherwise).
    """

    def __init__(self, *, epochs: int = 1, finetune_epochs: int = 1, batch_size: int = 32,
                 lr: float = 1e-3, forward_times: int = 20, beta: float = 15.0,
                 memory_size: int = 2000, memory_per_class: int | None = None,
                 selection: Literal["herding", "random"] = "random") -> None:
        self._init_common(epochs=epochs, batch_size=batch_size, lr=lr)
        if forward_times < 1 or finetune_epochs < 0:
            raise ValueError(f"forward_times must be >= 1 and finetune_epochs >= 0, got "
                             f"{forward_times}, {finetune_epochs}.")
        self.finetune_epochs, self.forward_times = int(finetune_epochs), int(forward_times)
        self.beta = float(beta)
        self.memory = ExemplarMemory(memory_size, memory_per_class, selection)
        self.net: Clap4ClipNet | None = None

    def _texts(self, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        per = torch.stack(self._template_texts(ctx), 1)   # (C, T, D)
        return F.normalize(per.mean(1), dim=-1), per

    def train_task(self, data: TaskData, ctx: Context) -> None:
        x, y = self._check_features(data, ctx)
        self._add_classes(y, ctx)
        if self.net is None:
            self.net = Clap4ClipNet(x.shape[1])
        net = self.net
        text, per = self._texts(ctx)
        for a in net.adapters:
            a.requires_grad_(False)
        net.adapters.append(VariationalAdapter(x.shape[1]))
        net.adapters[-1].init_from_text(per)
        train_x = torch.cat([x, self.memory.features]) if len(self.memory) else x
        train_y = torch.cat([y, self.memory.targets]) if len(self.memory) else y
        self._fit(train_x, self._local(train_y), text, per, self.epochs,
                  self.lr * self.batch_size / 20, finetuning=False, ctx=ctx)
        self.memory.update(x, y, len(self.class_ids), ctx.generator)
        if self.finetune_epochs and len(self.memory):
            net.adapters.requires_grad_(True)
            self._fit(self.memory.features, self._local(self.memory.targets), text, per,
                      self.finetune_epochs, self.lr * self.batch_size / 20 / 10,
                      finetuning=True, ctx=ctx)
        net.eval()
        self.trained += 1
        ctx.record("exemplars", len(self.memory))

    def _fit(self, x: torch.Tensor, y: torch.Tensor, text: torch.Tensor, per: torch.Tensor,
             epochs: int, lr: float, *, finetuning: bool, ctx: Context) -> None:
        net = self.net
        assert net is not None
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=lr, weight_decay=0.0)
        steps = epochs * -(-len(x) // self.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
        net.train()
        if finetuning:
            net.vga.eval()
        for _ in range(epochs):
            for idx in minibatches(len(x), self.batch_size, ctx.generator):
                loss = self.loss(net, x[idx], y[idx], text, per, self.task_sizes,
                                 self.forward_times, self.beta, finetuning, ctx.generator)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                ctx.count("examples_seen", len(idx))

    @staticmethod
    def loss(net: Clap4ClipNet, x: torch.Tensor, y: torch.Tensor, text: torch.Tensor,
             per: torch.Tensor, task_sizes: list[int], samples: int, beta: float,
             finetuning: bool, generator: torch.Generator | None) -> torch.Tensor:
        """CLAP4CLIP's loss of a batch (x (B, D), seen-class positions y (B,))."""
        logits, dists, draws = net(x, text, task_sizes, samples, generator)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.repeat(samples))
        start = 0
        for i, n in enumerate(task_sizes):
            if finetuning or i == len(task_sizes) - 1:
                loss = loss + prior_kl(dists[i])
                if beta > 0:
                    loss = loss + beta * lasp_loss(per[start:start + n], draws[i])
            start += n
        return loss

    def _scores(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        assert self.net is not None
        text, _ = self._texts(ctx)
        g = torch.Generator().manual_seed(ctx.seed)
        logits, _, _ = self.net(x, text, self.task_sizes, self.forward_times, g)
        return logits.mean(0)

    def trainable_parameters(self) -> int:
        return 0 if self.net is None else sum(p.numel() for p in self.net.parameters())

    def memory_bytes(self) -> int:
        return (0 if self.net is None else module_bytes(self.net)) + self.memory.nbytes()

    def state_dict(self) -> dict[str, Any]:
        state = self._common_state() | {"memory": self.memory.state_dict()}
        if self.net is not None:
            state |= {"dim": self.net.dim, "net": self.net.state_dict()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_common(state)
        self.memory.load_state_dict(state["memory"])
        self.net = None
        if "net" in state:
            self.net = Clap4ClipNet(int(state["dim"]))
            for _ in range(self.trained):
                self.net.adapters.append(VariationalAdapter(self.net.dim))
            self.net.load_state_dict(state["net"])
            self.net.eval()
