"""``rapf``: RAPF (Huang et al., "Class-Incremental Learning with CLIP: Adaptive Representation
Adjustment and Parameter Fusion", ECCV 2024).

Reference: linlany/RAPF @ 81d41dfb2e6f0c856c8ca520c1b35bd6ef0ba883
(``main.py: run_class_incremental``, ``continual_clip/models.py``).

A bias-free linear adapter ``A`` (D×D) maps frozen CLIP image features; logits
are ``s · norm(A x) · norm(t_c)ᵀ`` over the seen classes' text embeddings
``t_c`` (prompt ``"a good photo of a {}."``), ``s = 100`` (CLIP's scale).

- **Pseudo-feature replay** (``main.py``, ``sample``): after each task every class keeps the
  mean and covariance (``+ 1e-4·I``) of its frozen features; from the second
  task on each batch adds ``10·β`` samples of ``N(μ_c, Σ_c)`` for
  ``classes_per_batch`` old classes taken in turn from a per-epoch shuffle of
  the old classes (Cholesky sampling, optional ``shrink_cov`` shrinkage).
- **Class-name-aware separation** (``adaptation``, the hinge in ``main.py``): old classes whose text embedding
  lies closer than ``threshold`` (Euclidean) to a new class's form hard pairs;
  ``20·β`` pseudo-features of the old class per pair get the hinge
  ``relu(−⟨f, t_old⟩ + ⟨f, t_new⟩ + 0.1)``.
- **Decomposed parameter fusion** (``mix_matrix``): after each task, with
  ``A_old = U S Vᵀ``, ``P = Uᵀ A_new``, ``m = clamp(|P − S Vᵀ| / max + mix_bias, ≤ 1)``,
  ``A = U (m ⊙ P + (1 − m) ⊙ S Vᵀ)``.

Adam (lr 1e-3), ``MultiStepLR`` at epochs 4 and 10 (γ 0.1), 15 epochs, as the
reference configs. Memory: the statistics (C·(D + D²) floats) and the adapter; no exemplars.

Deviations: statistics are of the cache's L2-normalised features (the reference
keeps raw ``encode_image`` outputs; the adapter's logits are scale-invariant,
the Gaussians are not); random draws come from the run's generator.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cl.core.strategy import Context, TaskData
from strategies.cil.common import CILStrategy, minibatches, module_bytes, tensor_bytes


def shrink_cov(cov: torch.Tensor) -> torch.Tensor:
    """RAPF's covariance shrinkage: ``Σ + mean(diag)·I + mean(nonzero off-diag)·(1 − I)``."""
    d = cov.shape[0]
    eye = torch.eye(d, dtype=cov.dtype)
    off = cov * (1 - eye)
    nonzero = off != 0
    off_mean = off[nonzero].sum() / nonzero.sum()
    return cov + torch.diagonal(cov).mean() * eye + off_mean * (1 - eye)


def sampling_factor(cov: torch.Tensor, shrink: bool) -> torch.Tensor:
    """Cholesky factor ``L`` (D, D) of ``cov`` (after :func:`shrink_cov` when ``shrink``)."""
    return torch.linalg.cholesky(shrink_cov(cov) if shrink else cov)


def sample_gaussian(mean: torch.Tensor, chol: torch.Tensor, size: int,
                    generator: torch.Generator) -> torch.Tensor:
    """``size`` draws (size, D) of ``N(mean, L Lᵀ)``: ``z @ Lᵀ + mean`` with ``z ~ N(0, I)``
    (RAPF's ``sample``, with the factor computed once per class)."""
    z = torch.randn(size, mean.shape[-1], generator=generator, dtype=mean.dtype)
    return z @ chol.T + mean


def class_gaussian(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance ``torch.cov + 1e-4·I`` (D, D) of one class's features (n, D)
    (RAPF's ``analyze_mean_cov``)."""
    cov = torch.cov(features.T) + 1e-4 * torch.eye(features.shape[1], dtype=features.dtype)
    return features.mean(0), cov


def fuse_adapter(new: torch.Tensor, old: torch.Tensor, mix_bias: float) -> torch.Tensor:
    """Decomposed parameter fusion of two adapter weights (D, D) (RAPF's ``mix_matrix``)."""
    u, s, vh = torch.linalg.svd(old)
    p_new = u.T @ new
    sv = torch.diag(s) @ vh
    dist = (p_new - sv).abs()
    mask = torch.clamp(dist / dist.max() + mix_bias, max=1.0)
    return u @ (p_new * mask + sv * (1 - mask))


def hinge_separation(edge: torch.Tensor, own: torch.Tensor, close: torch.Tensor) -> torch.Tensor:
    """RAPF's separation hinge (``main.py``) on normalised adapted pseudo-features and text embeddings (E, D)."""
    edge = F.normalize(edge, dim=-1)
    return torch.relu(-(edge * own).sum(-1) + (edge * close).sum(-1) + 0.1).mean()


class RAPF(CILStrategy):
    """RAPF on cached CLIP features (see the module docstring).

    Parameters
    ----------
    epochs : int
        Epochs per task (reference: 15).
    batch_size : int
        Reference: 100 (CIFAR-100), 64 (ImageNet-R).
    lr : float
        Adam learning rate (reference: 1e-3).
    milestones : list of int
        Epochs where the learning rate is divided by 10 (reference: [4, 10]).
    beta : float
        Pseudo-features per class and batch are ``10·β``, per hard pair ``20·β``
        (reference: 2 on CIFAR-100, 1 on ImageNet-R).
    classes_per_batch : int
        Old classes replayed per batch (reference: 2 on CIFAR-100 B0Inc10, 5 on ImageNet-R).
    threshold : float
        Text-embedding distance under which an old class is "close" to a new one
        (reference: 0.55 CIFAR-100, 0.65 ImageNet-R).
    mix_bias : float
        Bias of the fusion mask (reference: 0.6 CIFAR-100, 0.7 ImageNet-R).
    shrinkage : bool
        Shrink covariances before sampling (reference: off on CIFAR-100, on for ImageNet-R).
    template : str
        Class-name prompt (reference: ``"a good photo of a {}."``).
    logit_scale : float
    """

    def __init__(self, *, epochs: int = 15, batch_size: int = 100, lr: float = 1e-3,
                 milestones: list[int] | None = None, beta: float = 2.0,
                 classes_per_batch: int = 2, threshold: float = 0.55, mix_bias: float = 0.6,
                 shrinkage: bool = False, template: str = "a good photo of a {}.",
                 logit_scale: float = 100.0) -> None:
        self._init_common(epochs=epochs, batch_size=batch_size, lr=lr)
        if beta <= 0 or classes_per_batch < 1:
            raise ValueError(f"beta must be > 0 and classes_per_batch >= 1, got beta={beta}, "
                             f"classes_per_batch={classes_per_batch}.")
        if "{}" not in template:
            raise ValueError(f"template needs a '{{}}' slot for the class name, got {template!r}.")
        self.milestones = [4, 10] if milestones is None else [int(m) for m in milestones]
        self.beta, self.classes_per_batch = float(beta), int(classes_per_batch)
        self.threshold, self.mix_bias, self.shrinkage = float(threshold), float(mix_bias), shrinkage
        self.template, self.logit_scale = template, float(logit_scale)
        self.adapter: nn.Linear | None = None
        self.means: list[torch.Tensor] = []
        self.covs: list[torch.Tensor] = []
        self._chol: dict[int, torch.Tensor] = {}

    def _hard_pairs(self, text: torch.Tensor, n_new: int) -> torch.Tensor:
        """(old position, new position) pairs closer than ``threshold`` (``adaptation``)."""
        n_old = len(text) - n_new
        if n_old == 0:
            return torch.zeros(0, 2, dtype=torch.long)
        dist = torch.cdist(text[:n_old], text[n_old:])
        pairs = torch.nonzero(dist < self.threshold)
        pairs[:, 1] += n_old
        return pairs

    def train_task(self, data: TaskData, ctx: Context) -> None:
        x, y = self._check_features(data, ctx)
        new = self._add_classes(y, ctx)
        if self.adapter is None:
            self.adapter = nn.Linear(x.shape[1], x.shape[1], bias=False)
        old_weight = self.adapter.weight.detach().clone() if self.trained else None
        text = self._seen_text(ctx, self.template)
        pairs = self._hard_pairs(text, len(new))
        yl = self._local(y)
        n_old = len(self.class_ids) - len(new)
        opt = torch.optim.Adam(self.adapter.parameters(), lr=self.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, self.milestones, gamma=0.1)
        per_class, per_pair = int(10 * self.beta), int(20 * self.beta)
        for _ in range(self.epochs):
            order = torch.randperm(n_old, generator=ctx.generator).tolist()
            for b, idx in enumerate(minibatches(len(x), self.batch_size, ctx.generator)):
                feats, targets = x[idx], yl[idx]
                if n_old:
                    k = self.classes_per_batch
                    chosen = [order[(b * k + i) % n_old] for i in range(k)]
                    feats = torch.cat([feats] + [self._sample(c, per_class, ctx) for c in chosen])
                    targets = torch.cat([targets] + [torch.full((per_class,), c) for c in chosen])
                logits = self.logit_scale * F.normalize(self.adapter(feats), dim=-1) @ text.T
                loss = F.cross_entropy(logits, targets)
                if len(pairs):
                    edge = torch.cat([self._sample(int(o), per_pair, ctx) for o, _ in pairs])
                    own = text[pairs[:, 0].repeat_interleave(per_pair)]
                    close = text[pairs[:, 1].repeat_interleave(per_pair)]
                    loss = loss + hinge_separation(self.adapter(edge), own, close)
                opt.zero_grad()
                loss.backward()
                opt.step()
                ctx.count("examples_seen", len(idx))
            sched.step()
        for c in new:
            mean, cov = class_gaussian(x[y == c].double())
            self.means.append(mean)
            self.covs.append(cov)
        if old_weight is not None:
            with torch.no_grad():
                self.adapter.weight.copy_(fuse_adapter(self.adapter.weight, old_weight,
                                                       self.mix_bias))
        self.trained += 1
        ctx.record("exemplars", 0)
        ctx.record("hard_pairs", len(pairs))

    def _sample(self, c: int, size: int, ctx: Context) -> torch.Tensor:
        if c not in self._chol:
            self._chol[c] = sampling_factor(self.covs[c], self.shrinkage)
        return sample_gaussian(self.means[c], self._chol[c], size, ctx.generator).float()

    def _scores(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        assert self.adapter is not None
        text = self._seen_text(ctx, self.template)
        return self.logit_scale * F.normalize(self.adapter(x), dim=-1) @ text.T

    def trainable_parameters(self) -> int:
        return 0 if self.adapter is None else self.adapter.weight.numel()

    def memory_bytes(self) -> int:
        if self.adapter is None:
            return 0
        return module_bytes(self.adapter) + tensor_bytes(*self.means, *self.covs)

    def state_dict(self) -> dict[str, Any]:
        state = self._common_state()
        if self.adapter is not None:
            state |= {"adapter": self.adapter.weight.detach().clone(),
                      "means": list(self.means), "covs": list(self.covs)}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_common(state)
        self.adapter = None
        if "adapter" in state:
            w = state["adapter"]
            self.adapter = nn.Linear(w.shape[1], w.shape[0], bias=False)
            with torch.no_grad():
                self.adapter.weight.copy_(w)
            self.means, self.covs = list(state["means"]), list(state["covs"])
        self._chol = {}

