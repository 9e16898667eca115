"""Exact search: chunked matrix product + running top-k, with memory bounded by the chunk size.

On CPU the row chunks are shared out to `search_threads()` lanes (`anybind.workers.run_lanes`):
each lane scores the chunks it pulls with a single-threaded matrix product and keeps its own
running top-k, and the lanes' lists are merged at the end. Compared with one multi-threaded
product per chunk, the top-k bookkeeping runs in parallel too, and no lane waits for another
between chunks, so a descheduled thread (a busy machine) costs only its own share.
Peak extra memory is one ``[query_block, chunk_rows]`` float32 score block per lane (32 MiB with
the defaults), whatever the index size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from anybind.index.threads import search_threads
from anybind.index.vectors import VectorStore
from anybind.workers import run_lanes

CHUNK_ROWS = 8192  # index rows per matrix product (measured: 8192 is as fast as 16384 and uses half the memory)
QUERY_BLOCK = 1024  # queries per matrix product


def merge_topk(best_scores: torch.Tensor, best_positions: torch.Tensor, scores: torch.Tensor,
               positions: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge two ``[Q, *]`` candidate lists into the top `k` by score (best first)."""
    all_scores = torch.cat([best_scores, scores], dim=1)
    all_positions = torch.cat([best_positions, positions], dim=1)
    top, where = all_scores.topk(min(k, all_scores.shape[1]), dim=1)
    return top, all_positions.gather(1, where)


def _top_k_numpy(scores: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top `k` of each row of ``[B, M]`` `scores` (best first) and the matching `positions`."""
    if scores.shape[1] > k:
        where = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        scores, positions = np.take_along_axis(scores, where, 1), np.take_along_axis(positions, where, 1)
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(scores, order, 1), np.take_along_axis(positions, order, 1)


class StreamingTopK:
    """The running top-`k` of ``[B, R]`` score blocks that arrive chunk by chunk.

    The first block goes through `torch.topk`; after that only scores above each query's
    current k-th best can enter, and they are found with one comparison pass and a sparse
    `numpy.flatnonzero` (scores must be CPU float32) -- several times cheaper than a `topk` per block, which would
    otherwise cost more than the matrix product itself. The small merges run in numpy, so
    they do not wake torch's thread pool for microseconds of work.
    """

    def __init__(self, queries: int, k: int) -> None:
        self.k = k
        self.scores = np.full((queries, k), -np.inf, dtype=np.float32)
        self.positions = np.full((queries, k), -1, dtype=np.int64)
        self._seen = False
        self._mask: np.ndarray | None = None

    def push(self, scores: torch.Tensor, start: int) -> None:
        """Offer ``[B, R]`` float32 `scores` of the rows at positions ``start .. start + R - 1``."""
        if not self._seen:
            top, where = scores.topk(min(self.k, scores.shape[1]), dim=1)
            self.scores, self.positions = _top_k_numpy(
                np.concatenate([self.scores, top.numpy()], 1), np.concatenate([self.positions, where.numpy() + start], 1),
                self.k)
            self._seen = True
            return
        if self._mask is None or self._mask.shape != scores.shape:
            self._mask = np.empty(scores.shape, dtype=bool)
        # numpy's single-threaded compare is cheaper here than waking torch's thread pool
        flat = np.flatnonzero(np.greater(scores.numpy(), self.scores[:, -1:], out=self._mask))
        if not len(flat):
            return
        width = scores.shape[1]
        rows, columns = np.divmod(flat, width)
        counts = np.bincount(rows, minlength=len(self.scores))
        first = np.cumsum(counts) - counts  # index in `flat` of each query's first hit
        slots = np.arange(len(flat)) - first[rows]
        pad = int(counts.max())
        new_scores = np.full((len(self.scores), pad), -np.inf, dtype=np.float32)
        new_positions = np.full((len(self.scores), pad), -1, dtype=np.int64)
        new_scores[rows, slots] = scores.numpy().reshape(-1)[flat]
        new_positions[rows, slots] = columns + start
        self.scores, self.positions = _top_k_numpy(np.concatenate([self.scores, new_scores], 1),
                                                   np.concatenate([self.positions, new_positions], 1), self.k)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``scores [B, k]`` best first, and their row positions ``[B, k]``."""
        return torch.from_numpy(self.scores), torch.from_numpy(self.positions)


class ScoreBuffers(threading.local):
    """Per-thread reused float32 score blocks: a fresh 32 MiB block per chunk would be mmap'ed and
    page-faulted every time (glibc serves blocks this large by mmap), ~10% of the scan's CPU time."""

    def __init__(self) -> None:
        self.blocks: dict[tuple[int, int], torch.Tensor] = {}

    def get(self, queries: int, rows: int) -> torch.Tensor:
        """An uninitialized ``[queries, rows]`` float32 tensor owned by the calling thread."""
        block = self.blocks.get((queries, rows))
        if block is None:
            block = self.blocks[(queries, rows)] = torch.empty((queries, rows))
        return block


def lanes_top_k(chunks: Iterable[tuple[int, Any]], score: Callable[[Any], torch.Tensor], queries: int, k: int,
                row_mask: torch.Tensor | None = None, workers: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-`k` over row chunks scored in parallel lanes (see the module docstring).

    `chunks` yields ``(first row position, payload)``; ``score(payload)`` gives the ``[queries, R]``
    float32 CPU scores of the chunk's R rows (called on a single-threaded worker). `workers`
    defaults to `search_threads()`. Returns ``scores [queries, k]`` best first and their positions.
    """
    def lane(items: Iterable[tuple[int, Any]]) -> StreamingTopK:
        top = StreamingTopK(queries, k)
        for start, payload in items:
            top.push(masked_scores(score(payload), row_mask, start), start)
        return top

    tops = run_lanes(chunks, lane, search_threads() if workers is None else workers)
    if len(tops) == 1:
        return tops[0].result()
    scores, positions = _top_k_numpy(np.concatenate([top.scores for top in tops], 1),
                                      np.concatenate([top.positions for top in tops], 1), k)
    return torch.from_numpy(scores), torch.from_numpy(positions)


def masked_scores(scores: torch.Tensor, row_mask: torch.Tensor | None, start: int) -> torch.Tensor:
    """Set the scores of rows excluded by boolean `row_mask` ``[N]`` to -inf (in place) and return them."""
    if row_mask is not None:
        scores.masked_fill_(~row_mask[start:start + scores.shape[1]], float("-inf"))
    return scores


def exact_search(store: VectorStore, queries: torch.Tensor, k: int, row_mask: torch.Tensor | None = None,
                 chunk_rows: int = CHUNK_ROWS, query_block: int = QUERY_BLOCK,
                 device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`k` inner products of ``[Q, D]`` float32 `queries` against every row of `store`.

    Rows where `row_mask` is False are skipped. `k` must not exceed the number of allowed rows.
    With `device` (e.g. ``"cuda"``) each chunk is copied there and scored with a per-chunk
    `topk`; by default the CPU path uses `StreamingTopK`. Returns ``scores [Q, k]`` (float32,
    best first) and ``positions [Q, k]`` (int64 row positions), on CPU.
    """
    out_scores, out_positions = [], []
    target = torch.device(device) if device is not None else None
    buffers = ScoreBuffers()  # each lane's score blocks, reused by every query block of this search
    for q_start in range(0, len(queries), query_block):
        block = queries[q_start:q_start + query_block]
        if target is None:
            best_scores, best_positions = lanes_top_k(
                store.chunks(chunk_rows), lambda rows: torch.mm(block, rows.T, out=buffers.get(len(block), len(rows))),
                len(block), k, row_mask)
        else:
            best_scores, best_positions = _search_on_device(store, block.to(target), k, row_mask, chunk_rows)
        out_scores.append(best_scores)
        out_positions.append(best_positions)
    return torch.cat(out_scores), torch.cat(out_positions)


def _search_on_device(store: VectorStore, block: torch.Tensor, k: int, row_mask: torch.Tensor | None,
                      chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    mask = row_mask.to(block.device) if row_mask is not None else None
    best_scores = block.new_empty((len(block), 0))
    best_positions = torch.empty((len(block), 0), dtype=torch.long, device=block.device)
    for start, rows in store.chunks(chunk_rows):
        scores = masked_scores(block @ rows.to(block.device, non_blocking=True).T, mask, start)
        top, where = scores.topk(min(k, scores.shape[1]), dim=1)
        best_scores, best_positions = merge_topk(best_scores, best_positions, top, where + start, k)
    return best_scores.cpu(), best_positions.cpu()
