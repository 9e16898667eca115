"""DDP plumbing for trainers: join torchrun's process group, rank/world size, barriers, averages.

Under ``torchrun`` the environment names RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; outside it everything degrades to a single process (rank 0 of 1).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) outside DDP."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def join_process_group(device: torch.device) -> bool:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA).

    Returns True when this call created the group (the caller then destroys it); False when
    not under torchrun or when the group already exists.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def local_device(device: torch.device) -> torch.device:
    """`device`, pinned to ``cuda:LOCAL_RANK`` for CUDA under DDP."""
    if device.type == "cuda" and world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def barrier() -> None:
    """Wait for every rank (no-op outside DDP)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def mean_over_ranks(value: torch.Tensor) -> float:
    """The mean of a scalar tensor over all ranks (the value itself outside DDP)."""
    if dist.is_available() and dist.is_initialized():
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return float(value)


def gather_objects(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order (``[value]`` outside DDP)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, value)
        return out
    return [value]
