"""The `faiss` backend: IVF / HNSW / IVF-PQ approximate search for indexes beyond memory.

The faiss index type is chosen from a memory budget, the way autofaiss does: exact ``Flat``
for small collections, ``HNSW32,Flat`` when full vectors plus graph links fit, ``IVF,Flat``
when the vectors alone fit, else ``IVF,PQ`` with the largest code that fits. A saved index
keeps its trained faiss index beside the shards (`anybind.index.faiss_store`) and a loaded
index maps it instead of training again; an index changed in memory builds a fresh one
(streaming, trained on a sample) when first searched. faiss is optional: ``pip install anybind[faiss]``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
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
    smallest = min((c for c in PQ_CODE_BYTES if dim % c == 0), default=None)
    if smallest is None:
        raise InputError(f"`memory_budget`: {budget} bytes cannot hold {count} vectors as Flat/HNSW/IVF, and no PQ "
                         f"code size of {PQ_CODE_BYTES} divides dim {dim}")
    raise InputError(f"`memory_budget`: {budget} bytes cannot hold {count} vectors; the smallest index type, "
                     f"IVF{lists},PQ{smallest}, needs about {count * (smallest + 8)} bytes "
                     f"({count * (smallest + 8) / (1 << 20):.0f} MiB)")


class FaissSearcher:
    """A faiss index over a `VectorStore`, loaded from its saved index folder or built lazily; faiss ids are row positions.

    `persisted` is ``(index folder, generation, verify)`` of the saved index the store was
    loaded from: its persisted faiss index is used when it was built with the same options.
    """

    def __init__(self, store: VectorStore, *, persisted: tuple[Path, str, bool] | None = None,
                 **options: Any) -> None:
        self.faiss = require_faiss()
        self.store = store
        self.options = {key: value for key, value in options.items() if value is not None}
        memory_budget = options.get("memory_budget") or DEFAULT_MEMORY_BUDGET
        factory, nprobe = options.get("factory"), options.get("nprobe")
        ef_search = options.get("ef_search") or 128
        self.memory_budget = parse_bytes(memory_budget)
        self.factory = factory
        self.nprobe = nprobe
        self.ef_search = ef_search
        self.persisted = persisted
        self.facts: dict[str, Any] = {}
        self.index: Any = None

    def prepare(self) -> None:
        """Load the persisted faiss index, or build one from every stored row (once)."""
        from anybind.index.faiss_store import CHUNK_BYTES, build_from_chunks, load_faiss_index, store_chunks

        if self.index is not None:
            return
        if self.persisted is not None:
            folder, generation, verify = self.persisted
            loaded = load_faiss_index(folder, generation, self.options, verify=verify)
            if loaded is not None and loaded[0].ntotal == len(self.store):
                self.index, self.facts = loaded
                self.factory = self.facts["factory"]
                return
        chunk_rows = max(1, CHUNK_BYTES // (self.store.dim * 4))
        self.index, self.facts = build_from_chunks(store_chunks(self.store.segments, chunk_rows), len(self.store),
                                                   self.store.dim, memory_budget=self.memory_budget,
                                                   factory=self.factory, nprobe=self.nprobe, ef_search=self.ef_search,
                                                   whole_process=False, take_rows=self.store.take)
        self.factory = self.facts["factory"]

    def search(self, queries: torch.Tensor, k: int, row_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Approximate top-`k` -> ``scores [Q, k]`` and ``positions [Q, k]`` (-inf / -1 where faiss found fewer)."""
        from anybind.index.faiss_store import default_search_parameters, search_faiss

        self.prepare()
        selector = None
        if row_mask is not None:
            selector = self.faiss.IDSelectorBatch(np.flatnonzero(row_mask.numpy()).astype(np.int64))
        params = default_search_parameters(self.faiss, self.index, self.factory or "", self.nprobe, self.ef_search,
                                           selector)
        return search_faiss(self.index, self.factory or "", queries, k, params, self.store.take)
