"""Multi-process training through torchrun: process group set-up, global-batch gathers, gradient averaging.

Every rank builds the same global batch (same seed) and takes its own slice, so shards never overlap.
Each rank computes the contrastive loss on the gathered global batch; gradients are then averaged over
ranks, which gives exactly the single-process gradient of the global batch (see `all_gather_rows`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor


def resolve_device(name: str) -> torch.device:
    """A config's device name → torch.device; "auto" is CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This rank's contiguous slice of a global batch (sizes differ by at most one)."""
        return np.array_split(rows, self.size)[self.rank] if self.active else rows

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def init_from_env(device: torch.device) -> World:
    """Join the process group that torchrun describes in the environment; a plain run is a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


def all_gather_rows(x: Tensor, world: World) -> Tensor:
    """(b_local, D) → (B, D) in rank order, differentiable.

    The backward of torch.distributed.nn's all_gather sums the gradients that every rank computes for
    this rank's rows; since every rank computes the same global loss, that sum is world·∂L/∂rows, and
    `average_gradients` divides by world again.
    """
    if not world.active:
        return x
    with warnings.catch_warnings():  # its replacement in _functional_collectives is private API
        warnings.simplefilter("ignore", FutureWarning)
        from torch.distributed.nn.functional import all_gather

    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world.size)]
    dist.all_gather(sizes, torch.tensor([len(x)], device=x.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.cat([x, x.new_zeros(longest - len(x), *x.shape[1:])]) if len(x) < longest else x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(padded)
    return torch.cat([part[: int(n.item())] for part, n in zip(parts, sizes)])


def gather_labels(y: Tensor, world: World) -> Tensor:
    """(b_local,) integer labels → (B,) in rank order (no gradient)."""
    if not world.active:
        return y
    return all_gather_rows(y[:, None].double(), world).detach()[:, 0].to(y.dtype)  # exact below 2**53


def average_gradients(params, world: World) -> None:
    """Average .grad over ranks (one flat all-reduce)."""
    if not world.active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_scalars(values: dict[str, float], world: World) -> dict[str, float]:
    """Mean of each logged scalar over ranks, so rank 0 logs global-batch figures."""
    if not world.active or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world.size for k, v in zip(keys, t)}


def any_across_ranks(mask: Tensor, world: World) -> Tensor:
    """Element-wise OR of a bool tensor over ranks (which latents fired anywhere); a no-op in a world of one."""
    if not world.active:
        return mask
    as_int = mask.to(torch.int32)
    dist.all_reduce(as_int, op=dist.ReduceOp.MAX)
    return as_int.bool()


def sum_across_ranks(x: Tensor, world: World) -> Tensor:
    """Element-wise sum over ranks (how often each latent fired in the global batch); a no-op in a world of one."""
    if not world.active:
        return x
    total = x.clone()
    dist.all_reduce(total)
    return total
