"""Exact search: chunked matrix product + running top-k, with memory bounded by the chunk size.

Peak extra memory is one ``[query_block, chunk_rows]`` float32 score block (64 MiB with the
defaults), whatever the index size.
"""

from __future__ import annotations

import torch

from anybind.index.vectors import VectorStore

CHUNK_ROWS = 16384  # index rows per matrix product
QUERY_BLOCK = 1024  # queries per matrix product


def merge_topk(best_scores: torch.Tensor, best_positions: torch.Tensor, scores: torch.Tensor,
               positions: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge two ``[Q, *]`` candidate lists into the top `k` by score (best first)."""
    all_scores = torch.cat([best_scores, scores], dim=1)
    all_positions = torch.cat([best_positions, positions], dim=1)
    top, where = all_scores.topk(min(k, all_scores.shape[1]), dim=1)
    return top, all_positions.gather(1, where)


def masked_scores(scores: torch.Tensor, row_mask: torch.Tensor | None, start: int) -> torch.Tensor:
    """Set the scores of rows excluded by boolean `row_mask` ``[N]`` to -inf (in place) and return them."""
    if row_mask is not None:
        scores.masked_fill_(~row_mask[start:start + scores.shape[1]], float("-inf"))
    return scores


def exact_search(store: VectorStore, queries: torch.Tensor, k: int, row_mask: torch.Tensor | None = None,
                 chunk_rows: int = CHUNK_ROWS, query_block: int = QUERY_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`k` inner products of ``[Q, D]`` float32 `queries` against every row of `store`.

    Rows where `row_mask` is False are skipped. `k` must not exceed the number of allowed rows.
    Returns ``scores [Q, k]`` (float32, best first) and ``positions [Q, k]`` (int64 row positions).
    """
    out_scores, out_positions = [], []
    for q_start in range(0, len(queries), query_block):
        block = queries[q_start:q_start + query_block]
        best_scores = block.new_empty((len(block), 0))
        best_positions = torch.empty((len(block), 0), dtype=torch.long)
        for start, rows in store.chunks(chunk_rows):
            scores = masked_scores(block @ rows.T, row_mask, start)
            top, where = scores.topk(min(k, scores.shape[1]), dim=1)
            best_scores, best_positions = merge_topk(best_scores, best_positions, top, where + start, k)
        out_scores.append(best_scores)
        out_positions.append(best_positions)
    return torch.cat(out_scores), torch.cat(out_positions)
