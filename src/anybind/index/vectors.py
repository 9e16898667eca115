"""`VectorStore`: the rows of an index as a list of float32 segments (in memory or memory-mapped).

Loading a saved index gives one read-only, memory-mapped segment per shard; `add` appends an
in-memory segment, so a large mapped index is never copied to grow it. Search backends walk the
rows chunk by chunk (`chunks`) and gather candidate rows by position (`take`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class VectorStore:
    """``[N, D]`` float32 rows kept as segments; positions run over the segments in order."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.segments: list[np.ndarray] = []
        self._offsets = np.zeros(1, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def append(self, rows: np.ndarray) -> None:
        """Append ``[n, D]`` float32 rows (kept by reference: the caller hands them over)."""
        if len(rows):
            self.segments.append(rows)
            self._offsets = np.append(self._offsets, self._offsets[-1] + len(rows))

    def chunks(self, chunk_rows: int) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(first position, [<=chunk_rows, D] float32 tensor)`` over all rows, without copies."""
        for segment, offset in zip(self.segments, self._offsets[:-1]):
            for start in range(0, len(segment), chunk_rows):
                yield int(offset) + start, torch.from_numpy(segment[start:start + chunk_rows])

    def take(self, positions: torch.Tensor) -> torch.Tensor:
        """Rows at int64 `positions` (any shape ``S``) -> ``[*S, D]`` float32 tensor (a copy)."""
        flat = positions.reshape(-1)
        if len(self.segments) == 1:
            rows = torch.from_numpy(self.segments[0]).index_select(0, flat)
        else:
            rows = torch.empty((len(flat), self.dim))
            offsets = torch.from_numpy(self._offsets)
            segment_of = torch.searchsorted(offsets, flat, right=True) - 1
            for index in torch.unique(segment_of).tolist():
                chosen = torch.nonzero(segment_of == index).squeeze(1)
                local = flat.index_select(0, chosen) - int(offsets[index])
                rows.index_copy_(0, chosen, torch.from_numpy(self.segments[index]).index_select(0, local))
        return rows.reshape(*positions.shape, self.dim)

    def as_array(self) -> np.ndarray:
        """All rows as one ``[N, D]`` array (no copy when there is a single segment)."""
        if len(self.segments) == 1:
            return self.segments[0]
        if not self.segments:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.concatenate(self.segments)

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the rows where boolean `mask` ``[N]`` is True (compacts into one in-memory segment)."""
        rows = self.as_array()[mask]
        self.segments = []
        self._offsets = np.zeros(1, dtype=np.int64)
        self.append(np.ascontiguousarray(rows))
