"""``replay``: exemplar replay from a class-balanced reservoir buffer.

Every example a strategy trains on passes through ``ctx.before_batch(x, y)``;
the plugin offers each *distinct* example (exact duplicates from later epochs
are recognised by content and skipped) to a buffer of at most
``memory_size`` examples kept by Class-Balancing Reservoir Sampling (CBRS,
Chrysakis & Moens 2020, "Online Continual Learning from Imbalanced Data",
ICML, Algorithm 1), and extends the batch with examples of *earlier* tasks
drawn uniformly from the buffer (experience replay, Chaudhry et al. 2019,
"On Tiny Episodic Memories in Continual Learning").

The buffer stores whatever ``x`` the strategy passes: cached features (N, D)
for feature strategies, preprocessed image tensors (N, 3, H, W) for image
strategies. Labels are global class ids, so replayed targets are valid in the
class-incremental and task-agnostic label spaces.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import torch

from cl.core.plugin import Plugin

if TYPE_CHECKING:
    from cl.core.strategy import Context


class ReplayPlugin(Plugin):
    """Class-balanced reservoir buffer replayed into every training batch.

    Parameters
    ----------
    memory_size : int
        Exact budget: the buffer never holds more than this many examples.
    replay_batch_size : int or None
        Buffer examples appended to each batch; ``None`` appends as many as the
        incoming batch holds (a 1:1 mix).
    seed : int or None
        Seed of the plugin's sampling; ``None`` uses the run seed. Task ``t`` of
        the run draws from ``seed * 1_000_003 + t``, so a resumed run matches.

    Attributes
    ----------
    x_ : torch.Tensor, shape (n, ...)
        Stored examples (n <= memory_size), on CPU.
    y_ : torch.Tensor, shape (n,), int64
        Their global class ids.
    task_ : torch.Tensor, shape (n,), int64
        Index of the task each example came from.
    seen_ : dict of int to int
        Distinct examples seen per class so far (CBRS's ``n_c``).

    Notes
    -----
    A class is *full* once it is, or has been at an earlier step, the largest class of the
    filled buffer (Algorithm 1 decides between its two replacement rules only after the
    memory is filled). A class that led while the buffer was still filling is not full:
    it keeps evicting the largest class until it ties with it, so a minority class that
    happened to arrive first is balanced like any other.
    """

    name = "replay"

    def __init__(
        self, *, memory_size: int = 200, replay_batch_size: int | None = None, seed: int | None = None
    ) -> None:
        if memory_size <= 0:
            raise ValueError(f"replay memory_size must be a positive number of examples, got {memory_size}.")
        if replay_batch_size is not None and replay_batch_size <= 0:
            raise ValueError(f"replay replay_batch_size must be positive or None, got {replay_batch_size}.")
        self.memory_size, self.replay_batch_size, self.seed = memory_size, replay_batch_size, seed
        self.x_: torch.Tensor | None = None
        self.y_ = torch.empty(0, dtype=torch.long)
        self.task_ = torch.empty(0, dtype=torch.long)
        self.seen_: dict[int, int] = {}
        self._full: set[int] = set()
        self._hashes: set[bytes] = set()
        self._task_index = 0
        self._generator = torch.Generator().manual_seed(0)

    # -- hooks ---------------------------------------------------------------
    def before_task(self, ctx: Context) -> None:
        base = ctx.seed if self.seed is None else self.seed
        self._generator = torch.Generator().manual_seed(base * 1_000_003 + ctx.task_index)
        self._task_index = ctx.task_index
        self._hashes = set()
        self._batches = 0

    def before_batch(
        self, x: torch.Tensor, y: torch.Tensor, ctx: Context
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Offer the batch to the buffer, then append replayed examples of earlier tasks."""
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"replay got {x.shape[0]} inputs but {y.shape[0]} labels in one batch.")
        self._batches = getattr(self, "_batches", 0) + 1
        xs, ys = x.detach().cpu(), y.detach().cpu().long()
        for i in range(xs.shape[0]):
            self._offer(xs[i], int(ys[i]))
        pool = torch.nonzero(self.task_ < ctx.task_index).flatten()
        if pool.numel() == 0:
            return x, y
        k = self.replay_batch_size or x.shape[0]
        if pool.numel() >= k:
            pick = pool[torch.randperm(pool.numel(), generator=self._generator)[:k]]
        else:
            pick = pool[torch.randint(pool.numel(), (k,), generator=self._generator)]
        ctx.count("replayed_examples", k)
        rx = self.x_[pick].to(device=x.device, dtype=x.dtype)
        ry = self.y_[pick].to(device=y.device, dtype=y.dtype)
        return torch.cat([x, rx]), torch.cat([y, ry])

    def after_task(self, ctx: Context) -> None:
        if getattr(self, "_batches", 1) == 0:
            raise ValueError(
                f"plugin 'replay' got no training batch in task {ctx.task_index}: the strategy "
                "does not train in minibatches (ctx.before_batch; training-free heads such as "
                "nmc, gda, rail), so there is nothing to replay into; remove the plugin.")
        counts = {str(c): int((self.y_ == c).sum()) for c in sorted(set(self.y_.tolist()))}
        ctx.record("replay_buffer", {"size": int(self.y_.numel()), "per_class": counts})

    # -- CBRS ------------------------------------------------------------------
    def _offer(self, x: torch.Tensor, y: int) -> None:
        """One step of CBRS (Chrysakis & Moens 2020, Alg. 1) for a distinct example."""
        digest = hashlib.blake2b(x.contiguous().numpy().tobytes(), digest_size=16)
        digest.update(y.to_bytes(8, "little", signed=True))
        key = digest.digest()
        if key in self._hashes:
            return
        self._hashes.add(key)
        self.seen_[y] = self.seen_.get(y, 0) + 1
        if self.x_ is None:
            self.x_ = torch.empty((self.memory_size, *x.shape), dtype=x.dtype)
        elif tuple(self.x_.shape[1:]) != tuple(x.shape):
            raise ValueError(
                f"replay buffer holds inputs of shape {tuple(self.x_.shape[1:])}, got {tuple(x.shape)}; "
                "one replay plugin serves one kind of input."
            )
        n = self.y_.numel()
        if n < self.memory_size:
            slot = n
            self.y_ = torch.cat([self.y_, torch.tensor([y])])
            self.task_ = torch.cat([self.task_, torch.tensor([self._task_index])])
        elif y not in self._full:
            classes, counts = torch.unique(self.y_, return_counts=True)
            largest = classes[counts == counts.max()]
            candidates = torch.nonzero(torch.isin(self.y_, largest)).flatten()
            slot = int(candidates[torch.randint(candidates.numel(), (1,), generator=self._generator)])
        else:
            mine = torch.nonzero(self.y_ == y).flatten()
            u = float(torch.rand(1, generator=self._generator))
            if u > mine.numel() / self.seen_[y]:
                return
            slot = int(mine[torch.randint(mine.numel(), (1,), generator=self._generator)])
        self.x_[slot] = x
        self.y_[slot] = y
        self.task_[slot] = self._task_index
        if self.y_.numel() == self.memory_size:  # "largest" and "full" count once it is filled
            classes, counts = torch.unique(self.y_, return_counts=True)
            self._full.update(int(c) for c in classes[counts == counts.max()])

    # -- state -----------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.y_.numel())

    def memory_bytes(self) -> int:
        """Bytes held by the stored examples and labels."""
        n = len(self)
        x_bytes = 0 if self.x_ is None else n * self.x_[0].numel() * self.x_.element_size()
        return x_bytes + 2 * n * 8

    def state_dict(self) -> dict[str, Any]:
        n = len(self)
        return {
            "x": None if self.x_ is None else self.x_[:n].clone(),
            "y": self.y_.clone(),
            "task": self.task_.clone(),
            "seen": {int(c): int(v) for c, v in self.seen_.items()},
            "full": sorted(self._full),
            "memory_size": self.memory_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["memory_size"]) != self.memory_size:
            raise ValueError(
                f"replay state was saved with memory_size={state['memory_size']}, "
                f"this plugin has {self.memory_size}; resume with the same options."
            )
        x = state["x"]
        self.y_, self.task_ = state["y"].long().clone(), state["task"].long().clone()
        self.seen_ = {int(c): int(v) for c, v in state["seen"].items()}
        self._full = {int(c) for c in state["full"]}
        if x is None:
            self.x_ = None
            return
        self.x_ = torch.empty((self.memory_size, *x.shape[1:]), dtype=x.dtype)
        self.x_[: x.shape[0]] = x
