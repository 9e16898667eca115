"""Fast exact search: a low-precision scan shortlists candidates, float32 re-ranking orders them exactly.

The scan kernel (int8 GEMM through fbgemm, bf16 through oneDNN, ...) is chosen for the CPU by
`anybind.index.kernels.choose_scan_path`. Each query keeps its `shortlist` best rows by
approximate score; those are scored again in float32, so returned scores are exact.

Whether the shortlist was long enough is checked per query on the data, not assumed: the
re-ranked candidates show how far approximate scores fall from exact ones, and ``margin`` =
`ERROR_SAFETY` x the largest such error in the query block. A row outside the shortlist has an
approximate score <= the last shortlisted one, so its exact score is below
``last approximate + margin``; when that is below the k-th exact score, no row outside the
shortlist can enter the top k and the query is *certified*. Queries that are not certified
(near-ties at the shortlist boundary, e.g. many duplicates) are searched again with the exact
float32 scan, so the ids match exact search whenever the measured error bound holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from anybind.index.exact import exact_search, lanes_top_k
from anybind.index.kernels import ScanChoice, choose_scan_path
from anybind.index.vectors import VectorStore

CHUNK_ROWS = 8192  # index rows per packed block
QUERY_BLOCK = 1024  # queries per scan
SHORTLIST_PER_RESULT = 10  # shortlist = this many candidates per requested result...
MIN_SHORTLIST = 100  # ...but at least this many
ERROR_SAFETY = 2.0  # margin = this x the largest approximate-score error seen among the re-ranked candidates
MIN_MARGIN = 1e-5  # float32 rounding of the scan and the re-rank (the fp32 path has no other error)


@dataclass
class PackedBlock:
    """One block of index rows prepared for the low-precision scan."""

    start: int  # position of the block's first row
    rows: int  # number of rows
    packed: object  # the kernel's packed copy (opaque)


@dataclass
class ScanStats:
    """What the last `LowPrecisionScan.search` did (for `Index.info`, benchmarks and tests)."""

    path: str = ""
    queries: int = 0
    shortlist: int = 0
    certified: int = 0  # queries whose shortlist provably held the exact top k
    rescanned: int = 0  # queries searched again with the exact float32 scan
    margins: list[float] = field(default_factory=list)  # per query block


class LowPrecisionScan:
    """The packed low-precision copy of a `VectorStore` (built once, on first search) and its search."""

    def __init__(self, store: VectorStore, scan_path: str | None = None, chunk_rows: int = CHUNK_ROWS) -> None:
        self.store = store
        self.requested = scan_path
        self.choice: ScanChoice = choose_scan_path(requested=scan_path)
        self.blocks: list[PackedBlock] | None = None
        self.chunk_rows = chunk_rows
        self.stats = ScanStats(path=self.choice.name)

    @property
    def path(self) -> str:
        """The scan path in use, e.g. ``"int8-fbgemm"``."""
        return self.choice.name

    def prepare(self) -> None:
        """Pack the rows (once); later searches reuse the packed blocks."""
        if self.blocks is None:
            self.blocks = [PackedBlock(start, len(rows), self.choice.kernel.pack(rows))
                           for start, rows in self.store.chunks(self.chunk_rows)]

    def search(self, queries: torch.Tensor, k: int, row_mask: torch.Tensor | None = None,
               candidates: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-`k` rows for ``[Q, D]`` `queries` -> ``scores [Q, k]`` (exact float32) and ``positions [Q, k]``.

        `candidates` is the shortlist length re-ranked in float32 (default ``max(10 k, 100)``).
        """
        self.prepare()
        allowed = len(self.store) if row_mask is None else int(row_mask.sum())
        shortlist = max(k, min(candidates or max(SHORTLIST_PER_RESULT * k, MIN_SHORTLIST), allowed))
        self.stats = ScanStats(path=self.path, queries=len(queries), shortlist=shortlist)
        out_scores, out_positions = [], []
        for q_start in range(0, len(queries), QUERY_BLOCK):
            block = queries[q_start:q_start + QUERY_BLOCK].contiguous()
            approximate, positions = self._shortlist(block, shortlist, row_mask)
            scores, positions = self._rerank(block, approximate, positions, k, complete=shortlist >= allowed,
                                             row_mask=row_mask)
            out_scores.append(scores)
            out_positions.append(positions)
        return torch.cat(out_scores), torch.cat(out_positions)

    def _shortlist(self, block: torch.Tensor, shortlist: int,
                   row_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        kernel = self.choice.kernel
        return lanes_top_k(((packed.start, packed.packed) for packed in self.blocks or []),
                           lambda packed: kernel.scores(block, packed), len(block), shortlist, row_mask)

    def _rerank(self, block: torch.Tensor, approximate: torch.Tensor, positions: torch.Tensor, k: int,
                complete: bool, row_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact top `k` of the shortlist; queries whose shortlist is not certified are scanned exactly."""
        rows = self.store.take(positions)  # [B, shortlist, D]
        exact = torch.bmm(rows, block.unsqueeze(2)).squeeze(2)  # [B, shortlist]
        top, where = exact.topk(k, dim=1)
        positions = positions.gather(1, where)
        seen = torch.isfinite(approximate)  # -inf only where masked rows fill a shortlist that holds every allowed row
        error = float((approximate - exact)[seen].abs().max()) if bool(seen.any()) else 0.0
        margin = max(ERROR_SAFETY * error, MIN_MARGIN)
        self.stats.margins.append(margin)
        if complete:  # the shortlist holds every allowed row
            self.stats.certified += len(block)
            return top, positions
        certified = approximate[:, -1] + margin < top[:, -1]
        self.stats.certified += int(certified.sum())
        redo = torch.nonzero(~certified).squeeze(1)
        if len(redo):
            self.stats.rescanned += len(redo)
            redo_scores, redo_positions = exact_search(self.store, block[redo], k, row_mask)
            top[redo], positions[redo] = redo_scores, redo_positions
        return top, positions

