"""Process-wide pools of threads that each run torch single-threaded.

Many small parallel ops (one OpenMP team per op) stall whenever one OpenMP thread is descheduled:
every op waits for the slowest thread. On a shared machine it is faster and far steadier to give
each of `n` Python threads its own independent stream of work, single-threaded inside (torch ops,
BLAS and numpy release the GIL), and let the threads pull work from a shared queue so a thread on
a busy core simply takes fewer items. The point-cloud projection and the CPU index scans use this.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_LOCK = threading.Lock()
_POOLS: dict[int, ThreadPoolExecutor] = {}


def _single_threaded_worker() -> None:
    torch.get_num_threads()  # let torch initialize this thread's settings first, or it would overwrite ours
    torch.set_num_threads(1)


def single_threaded_pool(workers: int) -> ThreadPoolExecutor:
    """The process-wide pool of `workers` threads that run torch single-threaded (made on first use)."""
    with _LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            before = torch.get_num_threads()
            pool = ThreadPoolExecutor(workers, thread_name_prefix=f"anybind-worker{workers}",
                                      initializer=_single_threaded_worker)
            started = threading.Barrier(workers)
            list(pool.map(lambda _: started.wait(), range(workers)))  # start (and initialize) every worker now
            # A worker's set_num_threads(1) can also lower torch's process default; give it back.
            torch.set_num_threads(before)
            _POOLS[workers] = pool
        return pool


def run_lanes(items: Iterable[T], lane: Callable[[Iterator[T]], R], workers: int) -> list[R]:
    """Run `workers` copies of `lane` on the pool; each pulls items from one shared iterator over `items`.

    Returns each lane's result (in lane order). A lane on a busy core takes fewer items, so the
    work balances itself. With ``workers <= 1`` one lane runs in the calling thread.
    """
    if workers <= 1:
        return [lane(iter(items))]
    source, lock = iter(items), threading.Lock()

    def shared() -> Iterator[T]:
        while True:
            with lock:
                item = next(source, _END)
            if item is _END:
                return
            yield item  # type: ignore[misc]

    futures = [single_threaded_pool(workers).submit(lane, shared()) for _ in range(workers)]
    return [future.result() for future in futures]


_END = object()
