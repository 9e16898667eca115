"""The `faiss` backend: IVF / HNSW / IVF-PQ approximate search for indexes beyond memory.

The faiss index type is chosen from a memory budget, the way autofaiss does: exact ``Flat``
for small collections, ``HNSW32,Flat`` when full vectors plus graph links fit, ``IVF,Flat``
when the vectors alone fit, else ``IVF,PQ`` with the largest code that fits. The faiss index
is rebuilt from the stored float32 rows when first searched after a change; it is not saved.
faiss is optional: ``pip install anybind[faiss]``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch

from anybind.errors import InputError, MissingDependencyError
from anybind.index.vectors import VectorStore

DEFAULT_MEMORY_BUDGET = 4 << 30  # bytes
FLAT_BELOW = 20_000  # below this many rows an exact scan is fast enough
HNSW_LINKS = 32  # neighbours per HNSW node
HNSW_BYTES_PER_ROW = HNSW_LINKS * 2 * 4  # graph links (two layers' worth of int32 ids, on average)
PQ_CODE_BYTES = (64, 48, 32, 24, 16, 8, 4)  # PQ code sizes tried, largest first
TRAIN_POINTS_PER_LIST = 64  # k-means training points per IVF list...
MIN_TRAIN_POINTS = 40 * 256  # ...and at least 39+ per centroid of a PQ sub-quantizer (256 centroids)
_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}


def require_faiss() -> Any:
    """Import faiss, or raise `MissingDependencyError` naming the pip extra."""
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError(
            "the `faiss` index backend needs faiss: `pip install anybind[faiss]` (or `pip install faiss-cpu`)"
        ) from None
    return faiss


def parse_bytes(value: int | str, argument: str = "memory_budget") -> int:
    """``4 << 30``, ``"4GB"``, ``"512 MB"`` -> bytes (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?b?)\s*", str(value).lower()) if isinstance(value, str) else None
    if not match or match.group(2) not in _UNITS:
        raise InputError(f"`{argument}`: expected a positive byte count such as 4000000000 or '4GB', got {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def ivf_lists(count: int) -> int:
    """Number of IVF lists for `count` rows: a power of two near ``4 sqrt(count)``, with >= 39 rows per list."""
    lists = 2 ** round(math.log2(max(4.0 * math.sqrt(count), 1.0)))
    while lists > 1 and count < 39 * lists:
        lists //= 2
    return max(lists, 1)


def choose_index_factory(count: int, dim: int, memory_budget: int | str = DEFAULT_MEMORY_BUDGET) -> str:
    """The faiss ``index_factory`` string for `count` rows of width `dim` within `memory_budget` bytes."""
    budget = parse_bytes(memory_budget)
    flat_bytes = count * dim * 4
    if count < FLAT_BELOW and flat_bytes <= budget:
        return "Flat"
    if count * (dim * 4 + HNSW_BYTES_PER_ROW) <= budget:
        return f"HNSW{HNSW_LINKS},Flat"
    lists = ivf_lists(count)
    if flat_bytes + count * 8 <= budget:
        return f"IVF{lists},Flat"
    for code in PQ_CODE_BYTES:
        if dim % code == 0 and count * (code + 8) <= budget:
            return f"IVF{lists},PQ{code}"
    raise InputError(f"`memory_budget`: {budget} bytes cannot hold {count} vectors even as 4-byte PQ codes "
                     f"(needs about {count * 12} bytes)")


class FaissSearcher:
    """A faiss index over a `VectorStore`, built lazily; faiss ids are row positions."""

    def __init__(self, store: VectorStore, memory_budget: int | str = DEFAULT_MEMORY_BUDGET,
                 factory: str | None = None, nprobe: int | None = None, ef_search: int = 128) -> None:
        self.faiss = require_faiss()
        self.store = store
        self.memory_budget = parse_bytes(memory_budget)
        self.factory = factory
        self.nprobe = nprobe
        self.ef_search = ef_search
        self.index: Any = None

    def prepare(self) -> None:
        """Build and train the faiss index from every stored row (once)."""
        if self.index is not None:
            return
        faiss = self.faiss
        vectors = np.ascontiguousarray(self.store.as_array(), dtype=np.float32)
        factory = self.factory or choose_index_factory(len(vectors), self.store.dim, self.memory_budget)
        index = faiss.index_factory(self.store.dim, factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            lists = faiss.extract_index_ivf(index).nlist
            sample = min(len(vectors), max(TRAIN_POINTS_PER_LIST * lists, MIN_TRAIN_POINTS))
            chosen = np.random.default_rng(0).choice(len(vectors), sample, replace=False)
            index.train(vectors[np.sort(chosen)])
        index.add(vectors)
        self.factory, self.index = factory, index

    def _parameters(self, row_mask: torch.Tensor | None) -> Any:
        faiss = self.faiss
        selector = None
        if row_mask is not None:
            selector = faiss.IDSelectorBatch(np.flatnonzero(row_mask.numpy()).astype(np.int64))
        if "IVF" in (self.factory or ""):
            lists = faiss.extract_index_ivf(self.index).nlist
            nprobe = self.nprobe or max(1, min(lists, lists // 16 or 1))
            return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        if "HNSW" in (self.factory or ""):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.ef_search)
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def search(self, queries: torch.Tensor, k: int, row_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Approximate top-`k` -> ``scores [Q, k]`` and ``positions [Q, k]`` (-inf / -1 where faiss found fewer)."""
        self.prepare()
        params = self._parameters(row_mask)
        scores, positions = self.index.search(np.ascontiguousarray(queries.numpy()), k, params=params)
        scores_t = torch.from_numpy(scores)
        positions_t = torch.from_numpy(positions).long()
        scores_t[positions_t < 0] = float("-inf")
        return scores_t, positions_t
