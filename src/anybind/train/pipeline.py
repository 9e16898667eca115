"""The trainer's input pipeline: micro-batches as a `torch.utils.data` dataset indexed by micro-step.

Micro-batch m is a pure function of m (`batch_rows`: a seeded shuffle per epoch), so a
`DataLoader` over the micro-steps ``start..end`` with worker processes, pinned memory and
prefetch yields exactly the batches of the single-process loop, in order, and a resumed run
continues at ``start = step * grad_accum_steps`` with the same batches an uninterrupted run sees.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

LOG = logging.getLogger("anybind.train")


def batch_rows(micro_step: int, rows: int, batch_size: int, seed: int) -> torch.Tensor:
    """Row indices of global micro-batch `micro_step`: a seeded shuffle per epoch, last partial batch dropped.

    A pure function of its arguments: the data position of a run is just its step count.
    """
    per_epoch = rows // batch_size
    epoch, index = divmod(micro_step, per_epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(rows, generator=generator)
    return order[index * batch_size:(index + 1) * batch_size]


@dataclass
class MicroBatches(Dataset):
    """Item m = (this rank's modality batch of micro-step m, its ``[b]`` row indices).

    `inputs` are the training inputs (file paths); `load` turns a list of them into a batch
    (the input cache or the modality loader); `rank`/`world_size` pick this rank's slice.
    """

    inputs: Sequence[Path]
    load: Callable[[list[Path]], Any]
    batch_size: int
    seed: int
    rank: int = 0
    world_size: int = 1

    def rows(self, micro_step: int) -> list[int]:
        """This rank's row indices of global micro-batch `micro_step`."""
        per_rank = self.batch_size // self.world_size
        rows = batch_rows(micro_step, len(self.inputs), self.batch_size, self.seed)
        return rows[self.rank * per_rank:(self.rank + 1) * per_rank].tolist()

    def __getitem__(self, micro_step: int) -> tuple[Any, torch.Tensor]:
        rows = self.rows(micro_step)
        return self.load([self.inputs[i] for i in rows]), torch.tensor(rows, dtype=torch.int64)

    def __len__(self) -> int:  # the sampler, not the length, bounds iteration
        return 2**62


def auto_workers(requested: int | None, cached_in_memory: bool) -> int:
    """Worker processes: `requested`, else 0 when batches are assembled from memory (cheap), else up to
    4 leaving one core for the training process."""
    if requested is not None:
        return requested
    if cached_in_memory:
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def iterate_micro_batches(dataset: MicroBatches, start: int, end: int, *, workers: int, prefetch: int,
                          pin_memory: bool) -> Iterator[tuple[Any, torch.Tensor]]:
    """(batch, rows) of micro-steps ``start..end-1`` in order; `workers` processes load ahead
    (`prefetch` batches each), pinned for fast host-to-GPU copies when `pin_memory`."""
    if end <= start:
        return iter(())
    options: dict[str, Any] = {}
    if workers > 0 and "fork" not in multiprocessing.get_all_start_methods():
        # The dataset holds the run's loaders (model, caches, locks), which a spawned worker would
        # have to unpickle; without fork (Windows) batches are loaded in the training process.
        LOG.warning("input pipeline: this platform cannot fork worker processes; loading batches in the "
                    "training process instead of %d worker(s)", workers)
        workers = 0
    if workers > 0:
        options = {"prefetch_factor": max(1, prefetch), "persistent_workers": False,
                   "multiprocessing_context": "fork"}  # also on macOS, whose default (spawn) would pickle the run
    # An own generator: a DataLoader iterator otherwise draws its worker base seed from the global
    # torch RNG, which would shift the dropout draws of a resumed run.
    generator = torch.Generator().manual_seed(dataset.seed * 1_000_003 + start)
    loader = DataLoader(dataset, batch_size=None, sampler=range(start, end), num_workers=workers,
                        pin_memory=pin_memory, generator=generator, **options)
    return iter(loader)
