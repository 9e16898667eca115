"""One thread budget for every search kernel: torch's, which follows ``OMP_NUM_THREADS``.

torch (MKL, oneDNN, fbgemm) and the faiss wheel each bring an OpenMP runtime (libgomp). When torch
is imported first, faiss binds to torch's runtime and they share one thread setting; when faiss is
imported first, it keeps its own pool sized from the core count, not from torch. Running faiss
searches with torch's setting means ``torch.set_num_threads(n)`` (or ``OMP_NUM_THREADS=n``) bounds
both in either case, so the two pools never ask for more cores than the user allowed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def search_threads() -> int:
    """Threads a search may use: ``torch.get_num_threads()`` (set by ``OMP_NUM_THREADS`` or the user)."""
    return max(1, torch.get_num_threads())


@contextlib.contextmanager
def faiss_threads() -> Iterator[int]:
    """Run the block with faiss's OpenMP pool sized like torch's; restores faiss's setting after.

    Yields the thread count. Without faiss installed the block runs unchanged (yields 0).
    """
    try:
        import faiss
    except ImportError:
        yield 0
        return
    before = faiss.omp_get_max_threads()
    threads = search_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield threads
    finally:
        faiss.omp_set_num_threads(before)
