"""Multi-process runs through ``torch.distributed`` (started by ``torchrun``).

``torchrun --nproc_per_node=N -m cl run ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set;
:func:`init_from_env` joins the process group (NCCL on GPU, gloo on CPU).

How work is split so that metrics equal a single-process run:

- **feature extraction**: rank ``r`` encodes items ``r, r+N, r+2N, ...`` of a
  split; the shards are all-gathered back into dataset order, and rank 0 alone
  writes the cache entry (identical to a single-process entry);
- **evaluation**: each rank scores its strided shard of the test split; the
  correct/total counts are summed with ``all_reduce`` (integers: exact);
- **training**: feature strategies train on the gathered features on every rank
  (identical, cheap); image strategies split each global minibatch across ranks,
  weight each rank's mean loss by its share of the batch and sum the gradients
  (:func:`all_reduce_gradients`);
- **files**: only rank 0 writes (checkpoints, results, reports, cache).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, Dataset, Sampler, Subset


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process' rank (0 when not distributed)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the only process that writes files."""
    return rank() == 0


def init_from_env() -> torch.device | None:
    """Join the process group described by torchrun's environment variables.

    Returns
    -------
    torch.device or None
        This rank's device (``cuda:LOCAL_RANK`` with NCCL when CUDA is available,
        else CPU with gloo), or ``None`` when ``WORLD_SIZE`` is unset or 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or is_initialized():
        return None
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ValueError(
                f"WORLD_SIZE={world} but {var} is not set; start multi-process runs with "
                "'torchrun --nproc_per_node=N -m cl run ...'."
            )
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return torch.device("cuda", local)
    dist.init_process_group("gloo")
    return torch.device("cpu")


def shard(dataset: Dataset) -> Dataset:
    """This rank's strided shard of ``dataset`` (the dataset itself when not distributed)."""
    n = world_size()
    if n == 1:
        return dataset
    return Subset(dataset, range(rank(), len(dataset), n))  # type: ignore[arg-type]


class ShardedBatchSampler(Sampler[list[int]]):
    """This rank's share ``batch[rank::world]`` of every batch of ``batches``.

    All ranks draw the same global batches (same seeded generator), so together
    they see exactly the batches of a single-process run, each image loaded once.
    """

    def __init__(self, batches: BatchSampler) -> None:
        self.batches = batches

    def __iter__(self):  # type: ignore[override]
        r, n = rank(), world_size()
        for batch in self.batches:
            yield batch[r::n]

    def __len__(self) -> int:
        return len(self.batches)


def all_reduce_gradients(params: list[torch.Tensor]) -> None:
    """Sum the gradients of ``params`` over ranks, in place (no-op in a single process).

    For a per-example loss whose mean over rank r's ``b_r`` examples is weighted by
    ``b_r / B`` (``B = Σ b_r``, from :func:`sum_counts`), the sum is the single-process
    gradient of the global batch mean, also for unequal or empty shards. A parameter
    without a gradient on a rank counts as zero there, so modules that a rank did not
    use in this step (mixture-of-experts routing) need no special handling; a parameter
    without a gradient on every rank keeps none, as in one process (an optimiser then
    skips it: no weight decay of an unused parameter, e.g. CLIP's ``logit_scale`` under
    a fixed temperature). All ranks must pass the same parameters in the same order.
    Gradients travel flattened in one buffer per dtype.
    """
    if world_size() == 1:
        return
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    if dist.get_backend() == "nccl":
        used = used.cuda()
    dist.all_reduce(used)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p, anywhere in zip(params, used.tolist(), strict=True):
        if not anywhere:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        by_dtype.setdefault(p.grad.dtype, []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat)
        start = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(flat[start:start + n].view_as(p.grad))
            start += n


def gather_strided(part: torch.Tensor, total: int) -> torch.Tensor:
    """Inverse of :func:`shard` for tensors: rank ``r`` holds rows ``r::N`` of a (total, ...) tensor.

    Returns the full tensor, in dataset order, on every rank.
    """
    n = world_size()
    if n == 1:
        return part
    longest = -(-total // n)
    padded = torch.zeros((longest, *part.shape[1:]), dtype=part.dtype)
    padded[: len(part)] = part.cpu()
    if dist.get_backend() == "nccl":
        padded = padded.cuda()
    pieces = [torch.empty_like(padded) for _ in range(n)]
    dist.all_gather(pieces, padded)
    full = torch.empty((total, *part.shape[1:]), dtype=part.dtype)
    for r, piece in enumerate(pieces):
        count = len(range(r, total, n))
        full[r::n] = piece[:count].cpu()
    return full


def sum_counts(*values: int) -> list[int]:
    """Sum integers across ranks (exact); identity when not distributed."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.long)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return [int(v) for v in t.cpu()]


def all_agree(flag: bool) -> bool:
    """True when ``flag`` is true on every rank."""
    if world_size() == 1:
        return flag
    return sum_counts(int(flag))[0] == world_size()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_initialized():
        dist.barrier()
