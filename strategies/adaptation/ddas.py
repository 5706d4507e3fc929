"""DDAS: MoE-Adapters' Distribution Discriminative Auto-Selector.

MoE-Adapters (Yu et al., CVPR 2024, "Distribution Discriminative Auto-Selector")
trains one small autoencoder per task on image features; at test time an input goes
to the router of the task whose autoencoder reconstructs it best, unless even the
best reconstruction error exceeds a threshold, in which case it goes to the frozen
zero-shot CLIP. Reference ``JiazuoYu/MoE-Adapters4CL`` @ 4572d97,
``mtil/src/models/AutoEncoder.py`` (model and training, l. 13–31 and 133–191) and
``mtil/src/models/evaluation.py`` (decision, l. 53–71):

* input ``z = sigmoid(f)`` of the features f (the reference: AlexNet conv5 features
  of the image, 256·13·13 values);
* autoencoder ``Sigmoid(W₂·ReLU(W₁·z + b₁) + b₂)`` with a 100-d code, trained with
  MSE by Adam (weight decay 1e−4) at rate ``0.01 · 0.1^⌊epoch / 10⌋``;
* error ``e_k = MSE(AE_k(z), z)``, **averaged over the whole evaluation batch** in the
  reference (one decision per batch); ``k* = argmin_k e_k`` (first on ties);
  zero-shot when ``e_{k*} > threshold`` or when ``k*`` is the autoencoder of the
  reference domain (the reference trains AE 0 on TinyImageNet and sends its winners
  to zero-shot too).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

#: domain id of an autoencoder whose winners go to the zero-shot model
ZERO_SHOT = -1


class Autoencoder(nn.Module):
    """``Sigmoid(W₂·ReLU(W₁·z + b₁) + b₂)`` (reference ``Autoencoder``, l. 13–31).

    Parameters
    ----------
    dim : int
        Input width D.
    code_dim : int
        Code width (100 in the reference).
    """

    def __init__(self, dim: int, code_dim: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, code_dim), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(code_dim, dim), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) → (N, D) reconstruction."""
        return self.decoder(self.encoder(z))


def train_autoencoder(
    model: Autoencoder, batches: Iterable[torch.Tensor], *, batches_per_epoch: int, lr: float,
    lr_decay_epochs: int, weight_decay: float,
) -> list[float]:
    """Train ``model`` on raw feature batches (B, D), one Adam step per batch; return the losses.

    Step i uses rate ``lr · 0.1^⌊⌊i / batches_per_epoch⌋ / lr_decay_epochs⌋`` (the
    reference's ``exp_lr_scheduler(optimizer, int(iteration / num_batches), 0.01)``,
    ``AutoEncoder.py`` l. 49–63 and 180) on the loss ``MSE(AE(σ(f)), σ(f))``.
    """
    if batches_per_epoch <= 0 or lr_decay_epochs <= 0:
        raise ValueError(
            f"batches_per_epoch and lr_decay_epochs must be positive, got {batches_per_epoch} "
            f"and {lr_decay_epochs}."
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses: list[float] = []
    model.train()
    for i, features in enumerate(batches):
        rate = lr * 0.1 ** ((i // batches_per_epoch) // lr_decay_epochs)
        for group in optimizer.param_groups:
            group["lr"] = rate
        z = torch.sigmoid(features)
        loss = F.mse_loss(model(z), z)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


class DDAS:
    """Per-domain autoencoders that route inputs to a task's experts or to zero-shot CLIP.

    Parameters
    ----------
    threshold : float
        Largest best-reconstruction error still routed to a task. The reference's
        MTIL runs use 0.0655 (full-shot) and 0.0585 (few-shot) on AlexNet features;
        on other features it must be chosen anew.
    code_dim : int
        Autoencoder code width (100).
    iterations : int
        Adam steps per autoencoder. The reference's ``--iterations 300`` (1000 for the
        TinyImageNet reference domain) loops over ``range(iterations + 1)``: 301 (1001)
        steps.
    batch_size : int
        Training minibatch (the reference's 64).
    lr : float
        Initial rate (0.01).
    lr_decay_epochs : int
        Epochs between ×0.1 decays (10).
    weight_decay : float
        Adam's L2 penalty (1e−4).
    per_sample : bool
        Decide per image. False (the reference) takes one decision for all rows
        passed together, on the batch-mean error.
    random_state : int
        Seeds initialisation and shuffling; autoencoder j uses ``random_state·1000003 + j``.

    Attributes
    ----------
    autoencoders_ : nn.ModuleList
        One per domain, in the order learned.
    domains_ : list of int
        Domain id of each autoencoder (a task index, or ``ZERO_SHOT``).
    n_features_in_ : int
    """

    def __init__(
        self, *, threshold: float, code_dim: int = 100, iterations: int = 301,
        batch_size: int = 64, lr: float = 0.01, lr_decay_epochs: int = 10,
        weight_decay: float = 1e-4, per_sample: bool = False, random_state: int = 0,
    ) -> None:
        self.threshold, self.code_dim, self.iterations = threshold, code_dim, iterations
        self.batch_size, self.lr, self.lr_decay_epochs = batch_size, lr, lr_decay_epochs
        self.weight_decay, self.per_sample = weight_decay, per_sample
        self.random_state = random_state

    def _check_params(self) -> None:
        for name in ("code_dim", "iterations", "batch_size", "lr_decay_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"DDAS {name} must be a positive integer, got {value!r}.")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"DDAS needs lr > 0 and weight_decay >= 0, got {self.lr}, "
                             f"{self.weight_decay}.")

    def _check_X(self, X: torch.Tensor) -> torch.Tensor:
        if not isinstance(X, torch.Tensor) or X.dim() != 2 or not X.is_floating_point():
            raise TypeError(f"X must be a float tensor (N, D), got {type(X).__name__} "
                            f"{tuple(getattr(X, 'shape', ()))}.")
        if hasattr(self, "n_features_in_") and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, DDAS was fitted on {self.n_features_in_}.")
        return X

    def fit(self, X: torch.Tensor, y: torch.Tensor) -> DDAS:
        """Forget everything, then :meth:`partial_fit` each domain of ``y`` (in order seen)."""
        for attr in ("autoencoders_", "domains_", "n_features_in_"):
            self.__dict__.pop(attr, None)
        return self.partial_fit(X, y)

    def partial_fit(self, X: torch.Tensor, y: torch.Tensor) -> DDAS:
        """Train one new autoencoder per domain id in ``y`` (N,) on its rows of X (N, D).

        Raises
        ------
        ValueError
            A domain that already has an autoencoder, or a domain id below ``ZERO_SHOT``.
        """
        self._check_params()
        X = self._check_X(X)
        y = torch.as_tensor(y)
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must be (N,) = ({X.shape[0]},), got {tuple(y.shape)}.")
        if not hasattr(self, "autoencoders_"):
            self.autoencoders_, self.domains_ = nn.ModuleList(), []
            self.n_features_in_ = X.shape[1]
        new = list(dict.fromkeys(y.tolist()))
        bad = [d for d in new if d in self.domains_ or d < ZERO_SHOT]
        if bad:
            raise ValueError(f"domains {bad} already have an autoencoder or are below {ZERO_SHOT}; "
                             "each domain is learned once, with id >= -1.")
        for domain in new:
            self._fit_domain(X[y == domain], domain)
        return self

    def _fit_domain(self, X: torch.Tensor, domain: int) -> None:
        seed = self.random_state * 1_000_003 + len(self.domains_)
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Autoencoder(X.shape[1], self.code_dim).to(X.device)
        per_epoch = -(-len(X) // self.batch_size)

        def batches() -> Iterable[torch.Tensor]:
            step = 0
            while True:
                order = torch.randperm(len(X), generator=generator).to(X.device)
                for start in range(0, len(X), self.batch_size):
                    if step == self.iterations:
                        return
                    yield X[order[start : start + self.batch_size]]
                    step += 1

        train_autoencoder(model, batches(), batches_per_epoch=per_epoch, lr=self.lr,
                          lr_decay_epochs=self.lr_decay_epochs, weight_decay=self.weight_decay)
        self.autoencoders_.append(model)
        self.domains_.append(domain)

    def decision_function(self, X: torch.Tensor) -> torch.Tensor:
        """Reconstruction errors (N, K) per image, or (1, K) for the batch unless ``per_sample``."""
        X = self._check_X(X)
        if not getattr(self, "domains_", None):
            raise ValueError("DDAS has no autoencoder yet; call partial_fit first.")
        z = torch.sigmoid(X)
        with torch.no_grad():
            if self.per_sample:
                return torch.stack([((ae(z) - z) ** 2).mean(1) for ae in self.autoencoders_], 1)
            return torch.stack([F.mse_loss(ae(z), z) for ae in self.autoencoders_])[None]

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """Route (N,) of every row: a task's domain id, or ``ZERO_SHOT`` (−1).

        With no autoencoder yet every row goes to zero-shot.
        """
        X = self._check_X(X)
        if not getattr(self, "domains_", None):
            return torch.full((len(X),), ZERO_SHOT, dtype=torch.long)
        errors = self.decision_function(X).cpu()
        best, k = errors.min(1)
        domains = torch.tensor(self.domains_)[k]
        routes = torch.where(best > self.threshold, torch.full_like(domains, ZERO_SHOT), domains)
        return routes if self.per_sample else routes.expand(len(X)).clone()
