"""`SearchResult`: scores, ids and metadata of the top hits of each query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Hit:
    """One retrieved row: its id, cosine similarity to the query and its metadata."""

    id: int | str
    score: float
    modality: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class SearchResult:
    """Top hits of Q queries, best first.

    `scores` is ``[Q, k]`` float32 cosine similarity (``k`` = the `k` asked for, or fewer when
    fewer rows match). An approximate backend may find fewer than ``k`` for some query: those
    slots hold score ``-inf``, id None and empty metadata, and `hits` leaves them out.
    """

    scores: torch.Tensor
    ids: list[list[int | str | None]]
    metadata: list[list[dict[str, Any]]]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def k(self) -> int:
        """Number of result slots per query."""
        return int(self.scores.shape[1]) if self.scores.ndim == 2 else 0

    def hits(self, query: int = 0) -> list[Hit]:
        """The hits of query number `query`, best first."""
        out = []
        for slot, row_id in enumerate(self.ids[query]):
            if row_id is None:
                continue
            record = self.metadata[query][slot]
            user = {key: value for key, value in record.items() if key not in ("id", "modality")}
            out.append(Hit(id=row_id, score=float(self.scores[query, slot]), modality=record.get("modality", ""),
                           metadata=user))
        return out

    def to_list(self) -> list[list[dict[str, Any]]]:
        """JSON-ready: per query, a list of ``{"id", "score", "modality", ...metadata}`` dicts."""
        return [[{"id": hit.id, "score": hit.score, "modality": hit.modality, **hit.metadata}
                 for hit in self.hits(query)] for query in range(len(self))]
