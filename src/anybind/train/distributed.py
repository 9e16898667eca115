"""DDP plumbing for trainers: join torchrun's process group, rank/world size, barriers, averages.

Under ``torchrun`` the environment names RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; outside it everything degrades to a single process (rank 0 of 1).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) outside DDP."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def join_process_group(device: torch.device) -> bool:
    """Join the process group torchrun describes: gloo on CPU, nccl on CUDA bound to `device`.

    `device` is this rank's device (see `local_device`); for CUDA it is made the current device
    (`torch.cuda.set_device`) and passed as ``device_id``, so NCCL collectives, including the
    object collectives (`all_gather_object`, `barrier`), run on this rank's GPU, not cuda:0.
    Returns True when this call created the group (the caller then destroys it); False when
    not under torchrun or when the group already exists.
    """
    use_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if device.type == "cuda":
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")
    return True


def local_device(device: torch.device, env: Mapping[str, str] | None = None) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` when `device` is CUDA and the job has more than one
    rank (WORLD_SIZE in `env`, default `os.environ`, or an existing process group), else `device`."""
    env = os.environ if env is None else env
    world_size = world()[1] if dist.is_available() and dist.is_initialized() else int(env.get("WORLD_SIZE", "1"))
    if device.type == "cuda" and world_size > 1:
        return torch.device("cuda", int(env.get("LOCAL_RANK", "0")))
    return device


def use_device(device: torch.device) -> None:
    """Make a CUDA `device` the current one (``torch.cuda.set_device``); a no-op for other devices."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


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
