"""A faiss index built from an index folder's shards in a streaming way, persisted beside them, loaded mmapped.

Building (`build_faiss_index`) never holds the float32 rows: pass 1 reads the shards in chunks
and keeps a random training sample, the index is trained on it, and pass 2 adds the rows chunk
by chunk while an exact top-10 of a query sample is kept, which gives recall@10. The
`memory_budget` is for the whole process (peak RSS): the index type is chosen for what is left
after the process's current resident size, the way autofaiss chooses it from a memory budget.

The result is written as ``faiss-<generation>.index`` plus a tag ``faiss-<generation>.json``
(generation, factory, options, size, sha256, recall@10), each to a temp file, fsynced and
renamed, the tag last. A loader uses it only when the tag names the manifest's current
generation, the same options, and the file passes its checks; IVF indexes are memory-mapped
(``faiss.IO_FLAG_MMAP``), so loading does not read the inverted lists. PQ search fetches
``RERANK_FACTOR * k`` candidates and re-ranks them with the exact rows of the mapped shards. A new save of the index
folder deletes the files of older generations (`anybind.index.storage`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anybind.atomic import atomic_path, atomic_write_json
from anybind.errors import InputError, InputFileError
from anybind.index.faiss_backend import (
    DEFAULT_MEMORY_BUDGET,
    MIN_TRAIN_POINTS,
    TRAIN_POINTS_PER_LIST,
    choose_index_factory,
    parse_bytes,
    require_faiss,
)
from anybind.index.storage import read_manifest, save_lock, verify_file
from anybind.index.vectors import VectorStore

FAISS_TAG_FORMAT = "anybind.faiss"
RECALL_QUERIES = 100  # query rows sampled from the index for recall@10 against exact search
RECALL_K = 10
CHUNK_BYTES = 16 << 20  # rows read (and added) per step
# Measured beside the index itself during a build: faiss's and torch's first-use buffers (~50 MiB),
# one read chunk, the recall sample and scores, re-ranked rows paged in from the shards, faiss work space;
# with 192 MiB a 800 MB-budget build peaked 9 MiB over, so rounded up to 256 MiB.
BUILD_OVERHEAD = 256 << 20
TRAIN_SHARE = 4  # the training sample may use at most 1/TRAIN_SHARE of the memory left...
MIN_POINTS_PER_LIST = 39  # ...but never fewer than faiss's minimum of 39 points per centroid

RERANK_FACTOR = 10  # PQ indexes fetch k * this many candidates and re-rank them with the exact float32 rows
ChunkSource = Callable[[], Iterator[np.ndarray]]
RowTaker = Callable[[torch.Tensor], torch.Tensor]  # int64 positions [Q, W] -> float32 rows [Q, W, D]


def faiss_files(folder: str | Path, generation: str) -> tuple[Path, Path]:
    """(index file, tag file) of the faiss index for index generation `generation` in `folder`."""
    folder = Path(folder)
    return folder / f"faiss-{generation}.index", folder / f"faiss-{generation}.json"


def resident_bytes() -> int:
    """This process's resident set size in bytes (Linux ``/proc``; 0 where unknown)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def shard_chunks(folder: str | Path, manifest: dict[str, Any], chunk_rows: int) -> ChunkSource:
    """A source of ``[<=chunk_rows, D]`` float32 chunks over every vector shard of an index folder, in row order.

    Rows are read with plain file reads into one reused buffer (not memory-mapped), so the
    page cache holds the file and the process's resident size stays at one chunk.
    """
    folder = Path(folder)
    dim = int(manifest["dim"])

    def chunks() -> Iterator[np.ndarray]:
        buffer = np.empty((chunk_rows, dim), dtype=np.float32)
        for entry in manifest["vectors"]:
            with open(folder / entry["file"], "rb") as handle:
                major, _ = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(handle)
                if dtype != np.float32 or fortran or len(shape) != 2 or shape[1] != dim:
                    raise InputFileError(f"index file {str(folder / entry['file'])!r}: expected float32 [rows, {dim}]")
                left = shape[0]
                while left:
                    rows = min(left, chunk_rows)
                    view = buffer[:rows]
                    if handle.readinto(memoryview(view).cast("B")) != view.nbytes:
                        raise InputFileError(f"index file {str(folder / entry['file'])!r} is truncated")
                    yield view
                    left -= rows

    return chunks


def store_chunks(segments: list[np.ndarray], chunk_rows: int) -> ChunkSource:
    """A source of ``[<=chunk_rows, D]`` chunks over in-memory (or mapped) row segments, in row order."""
    def chunks() -> Iterator[np.ndarray]:
        for segment in segments:
            for start in range(0, len(segment), chunk_rows):
                yield np.ascontiguousarray(segment[start:start + chunk_rows], dtype=np.float32)

    return chunks


def train_faiss_index(index: Any, sample: np.ndarray) -> None:
    """Train `index` on ``[n, D]`` float32 `sample` (the one place anybind trains a faiss index)."""
    index.train(sample)


def _sample_rows(chunks: ChunkSource, positions: np.ndarray, dim: int) -> np.ndarray:
    """Rows at sorted `positions`, gathered in one streaming pass."""
    out = np.empty((len(positions), dim), dtype=np.float32)
    first = taken = 0
    for chunk in chunks():
        stop = np.searchsorted(positions, first + len(chunk))
        if stop > taken:
            out[taken:stop] = chunk[positions[taken:stop] - first]
            taken = int(stop)
        first += len(chunk)
    return out


def build_from_chunks(chunks: ChunkSource, count: int, dim: int, *, memory_budget: int | str = DEFAULT_MEMORY_BUDGET,
                      factory: str | None = None, nprobe: int | None = None, ef_search: int | None = None,
                      seed: int = 0, recall_queries: int = RECALL_QUERIES, whole_process: bool = True,
                      take_rows: RowTaker | None = None) -> tuple[Any, dict[str, Any]]:
    """Choose, train and fill a faiss inner-product index from `chunks` of `count` rows; measure recall@10.

    Returns ``(faiss index, facts)`` with facts ``factory``, ``train_rows``, ``recall_at_10``,
    ``recall_queries``. `memory_budget` bounds the whole process's resident size (see module doc),
    or with `whole_process` False only the faiss index (rows already in memory are not counted);
    recall is measured as search runs: with `nprobe` / `ef_search` and, for PQ, re-ranking by `take_rows`.
    """
    faiss = require_faiss()
    if count < 1:
        raise InputError("`index` is empty: add vectors before building a faiss index")
    budget = parse_bytes(memory_budget)
    resident = resident_bytes() if whole_process else 0
    left = budget - resident - BUILD_OVERHEAD if whole_process else budget
    if left <= 0 and factory is None:
        try:
            choose_index_factory(count, dim, 1)
        except InputError as error:  # names the smallest index type and its size
            smallest = str(error).split("; ", 1)[-1]
        raise InputError(f"`memory_budget`: {budget} bytes leaves nothing for the index: this process already uses "
                         f"{resident} bytes and a build needs about {BUILD_OVERHEAD} more; {smallest}") from None
    if factory is None:
        factory = choose_index_factory(count, dim, left)  # raises naming the smallest type when none fits
        affordable_lists = left // TRAIN_SHARE // (dim * 4) // MIN_POINTS_PER_LIST
        match = re.match(r"IVF(\d+),", factory)
        if match and int(match.group(1)) > affordable_lists:  # fewer lists, so their training sample fits too
            lists = 2 ** max(0, int(affordable_lists).bit_length() - 1)
            factory = f"IVF{lists}," + factory[match.end():]
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    train_rows = 0
    if not index.is_trained:
        lists = faiss.extract_index_ivf(index).nlist
        wanted = max(TRAIN_POINTS_PER_LIST * lists, MIN_TRAIN_POINTS)
        affordable = left // TRAIN_SHARE // (dim * 4)
        train_rows = min(count, max(min(wanted, affordable), MIN_POINTS_PER_LIST * lists))
        positions = np.sort(rng.choice(count, train_rows, replace=False))
        sample = _sample_rows(chunks, positions, dim)
        train_faiss_index(index, sample)
        del sample
    query_count = min(recall_queries, count)
    queries = torch.from_numpy(_sample_rows(chunks, np.sort(rng.choice(count, query_count, replace=False)), dim))
    k = min(RECALL_K, count)
    best_scores = torch.full((query_count, k), float("-inf"))
    best_rows = torch.zeros((query_count, k), dtype=torch.long)
    first = 0
    for chunk in chunks():
        index.add(chunk)
        scores = queries @ torch.from_numpy(chunk).T
        merged = torch.cat([best_scores, scores], dim=1)
        rows = torch.cat([best_rows, torch.arange(first, first + len(chunk)).expand(query_count, -1)], dim=1)
        best_scores, picked = merged.topk(k, dim=1)
        best_rows = rows.gather(1, picked)
        first += len(chunk)
    facts = {"factory": factory, "train_rows": int(train_rows), "recall_queries": int(query_count)}
    searcher_params = default_search_parameters(faiss, index, factory, nprobe, ef_search or 128)
    _, found_t = search_faiss(index, factory, queries, k, searcher_params, take_rows)
    found = found_t.numpy()
    hits = sum(len(set(f.tolist()) & set(e.tolist())) for f, e in zip(found, best_rows.numpy()))
    facts["recall_at_10"] = round(hits / (query_count * k), 4)
    return index, facts


def search_faiss(index: Any, factory: str, queries: torch.Tensor, k: int, params: Any,
                 take_rows: RowTaker | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`k` of ``[Q, D]`` `queries` -> ``scores [Q, k]``, ``positions [Q, k]`` (-inf / -1 where fewer found).

    For PQ indexes with `take_rows`, ``k * RERANK_FACTOR`` candidates are re-scored with their exact
    float32 rows (read from the memory-mapped shards), so scores are exact cosines and recall improves.
    """
    rerank = take_rows is not None and "PQ" in factory
    wide = min(k * RERANK_FACTOR, index.ntotal) if rerank else k
    scores_np, positions_np = index.search(np.ascontiguousarray(queries.numpy()), max(wide, k), params=params)
    scores, positions = torch.from_numpy(scores_np), torch.from_numpy(positions_np).long()
    if rerank:
        assert take_rows is not None
        rows = take_rows(positions.clamp(min=0))
        scores = torch.einsum("qd,qwd->qw", queries, rows)
        scores[positions < 0] = float("-inf")
        scores, picked = scores.topk(min(k, scores.shape[1]), dim=1)
        positions = positions.gather(1, picked)
    scores = scores.clone()
    scores[positions < 0] = float("-inf")
    return scores, positions


def default_search_parameters(faiss: Any, index: Any, factory: str, nprobe: int | None = None,
                              ef_search: int = 128, selector: Any = None) -> Any:
    """faiss search parameters for `factory`: IVF probes ``nlist / 16`` lists unless `nprobe`; HNSW uses `ef_search`."""
    if "IVF" in factory:
        lists = faiss.extract_index_ivf(index).nlist
        probes = nprobe or max(1, min(lists, lists // 16 or 1))
        return faiss.SearchParametersIVF(sel=selector, nprobe=probes)
    if "HNSW" in factory:
        return faiss.SearchParametersHNSW(sel=selector, efSearch=ef_search)
    return faiss.SearchParameters(sel=selector) if selector is not None else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def persist_faiss_index(folder: str | Path, generation: str, index: Any, facts: dict[str, Any],
                        options: dict[str, Any]) -> dict[str, Any]:
    """Write `index` as ``faiss-<generation>.index`` and its tag atomically beside the shards; returns the tag.

    Nothing is written when the folder's manifest has moved on to another generation meanwhile.
    """
    faiss = require_faiss()
    folder = Path(folder)
    target, tag_path = faiss_files(folder, generation)
    with save_lock(folder):
        if read_manifest(folder).get("generation") != generation:
            raise InputFileError(f"`path`: index {str(folder)!r} was saved again while its faiss index was built; "
                                 "build it again")
        with atomic_path(target) as temp:
            faiss.write_index(index, str(temp))
            tag = {"format": FAISS_TAG_FORMAT, "version": 1, "generation": generation, "file": target.name,
                   "bytes": os.path.getsize(temp), "sha256": _sha256(temp), "options": options, **facts}
        atomic_write_json(tag_path, tag)
    return tag


def read_faiss_tag(folder: str | Path, generation: str) -> dict[str, Any] | None:
    """The tag of the persisted faiss index of `generation` in `folder`, or None when there is none."""
    _, tag_path = faiss_files(folder, generation)
    try:
        tag = json.loads(tag_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(tag, dict) or tag.get("format") != FAISS_TAG_FORMAT or tag.get("generation") != generation:
        return None
    return tag


def load_faiss_index(folder: str | Path, generation: str, options: dict[str, Any], verify: bool = True) -> tuple[Any, dict[str, Any]] | None:
    """The persisted faiss index of `generation` built with `options` -> ``(index, tag)``, else None.

    IVF indexes are memory-mapped read-only; HNSW and Flat indexes (which faiss cannot map) are read.
    With `verify` the file's size and sha256 are checked against the tag first.
    """
    faiss = require_faiss()
    tag = read_faiss_tag(folder, generation)
    if tag is None or tag.get("options") != options:
        return None
    path = Path(folder) / tag["file"]
    if verify:
        verify_file(path, tag)
    elif not path.is_file() or path.stat().st_size != tag["bytes"]:
        return None
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if "IVF" in tag["factory"] else 0
    return faiss.read_index(str(path), flags), tag


def build_faiss_index(folder: str | Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the faiss index of the saved index folder `folder` from its shards (streaming) and persist it.

    `options` are the faiss backend options (``memory_budget``, ``factory``...). Returns the tag.
    """
    options = {key: value for key, value in (options or {}).items() if value is not None}
    manifest = read_manifest(folder)
    dim = int(manifest["dim"])
    chunk_rows = max(1, CHUNK_BYTES // (dim * 4))
    store = VectorStore(dim)
    for entry in manifest["vectors"]:  # mapped read-only: re-ranking reads only the candidate rows
        store.append(np.load(Path(folder) / entry["file"], mmap_mode="c", allow_pickle=False))
    index, facts = build_from_chunks(shard_chunks(folder, manifest, chunk_rows), int(manifest["count"]), dim,
                                     take_rows=store.take,
                                     memory_budget=options.get("memory_budget", DEFAULT_MEMORY_BUDGET),
                                     factory=options.get("factory"), nprobe=options.get("nprobe"),
                                     ef_search=options.get("ef_search"))
    return persist_faiss_index(folder, manifest["generation"], index, facts, options)
