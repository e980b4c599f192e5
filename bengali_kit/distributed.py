"""The few facts of a ``torchrun`` process group that training needs: rank, world size, a barrier."""
from __future__ import annotations

import os

import torch.distributed as dist

__all__ = ["dist_env", "is_dist", "barrier"]


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (0, 1, 0 when not distributed)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def is_dist() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    """Wait for every rank (a no-op outside a process group)."""
    if is_dist():
        dist.barrier()
