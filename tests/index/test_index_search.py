"""Index search: exact / fast / faiss backends against brute force, filters, ids, metadata, removal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anybind import Embeddings, Index
from anybind.index import choose_index_factory

DIM = 32


def unit(n: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.fixture(scope="module")
def rows() -> torch.Tensor:
    return unit(3000, 0)


@pytest.fixture(scope="module")
def index(rows: torch.Tensor) -> Index:
    built = Index("test:anchor", DIM)
    built.add(rows[:2000], modality="image")
    built.add(rows[2000:], modality="audio", metadata=[{"n": i} for i in range(1000)])
    return built


@pytest.mark.parametrize("backend", ["exact", "fast"])
def test_matches_brute_force(index: Index, rows: torch.Tensor, backend: str) -> None:
    queries = unit(40, 1)
    expected = (queries @ rows.T).topk(10, dim=1)
    result = index.search(queries, k=10, backend=backend)
    assert torch.tensor(result.ids).equal(expected.indices)
    torch.testing.assert_close(result.scores, expected.values, atol=1e-5, rtol=0)


def test_exact_on_an_explicit_device_matches(index: Index, rows: torch.Tensor) -> None:
    queries = unit(8, 11)
    device_index = Index("test:anchor", DIM, backend_options={"device": "cpu"})  # the per-chunk topk path
    device_index.add(rows, modality="image")
    assert device_index.search(queries, k=6, backend="exact").ids == index.search(queries, k=6).ids


def test_fast_backend_chunks_and_shortlist(rows: torch.Tensor) -> None:
    index = Index("test:anchor", DIM, backend="fast", backend_options={"candidates": 50})
    for start in range(0, 3000, 700):  # several segments
        index.add(rows[start:start + 700], modality="image")
    queries = unit(20, 2)
    expected = (queries @ rows.T).topk(5, dim=1)
    result = index.search(queries, k=5)
    assert torch.tensor(result.ids).equal(expected.indices)


def test_modality_filter(index: Index, rows: torch.Tensor) -> None:
    queries = unit(5, 3)
    for backend in ("exact", "fast"):
        result = index.search(queries, k=7, modality="audio", backend=backend)
        expected = (queries @ rows[2000:].T).topk(7, dim=1).indices + 2000
        assert torch.tensor(result.ids).equal(expected)
        hit = result.hits(0)[0]
        assert hit.modality == "audio" and hit.metadata == {"n": hit.id - 2000}
    assert index.search(queries, k=3, modality=["audio", "image"]).k == 3


def test_k_larger_than_matching_rows_returns_what_exists() -> None:
    index = Index("test:anchor", DIM)
    index.add(unit(3, 4), modality="text")
    index.add(unit(2, 5), modality="audio")
    for backend in ("exact", "fast", "faiss"):
        assert index.search(unit(2, 6), k=50, backend=backend).scores.shape == (2, 5)
        assert len(index.search(unit(1, 6), k=50, modality="audio", backend=backend).hits(0)) == 2


def test_faiss_backend_flat_is_exact(index: Index, rows: torch.Tensor) -> None:
    pytest.importorskip("faiss")
    queries = unit(10, 7)
    result = index.search(queries, k=5, backend="faiss")  # 3000 rows -> "Flat"
    assert torch.tensor(result.ids).equal((queries @ rows.T).topk(5, dim=1).indices)
    filtered = index.search(queries, k=5, modality="audio", backend="faiss")
    assert all(i >= 2000 for hits in filtered.ids for i in hits)


def test_faiss_ivf_recall(rows: torch.Tensor) -> None:
    pytest.importorskip("faiss")
    index = Index("test:anchor", DIM, backend="faiss", backend_options={"factory": "IVF16,Flat", "nprobe": 16})
    index.add(rows, modality="image")
    queries = unit(10, 8)
    result = index.search(queries, k=5)
    assert torch.tensor(result.ids).equal((queries @ rows.T).topk(5, dim=1).indices)  # nprobe = nlist: exhaustive


@pytest.mark.parametrize(("count", "dim", "budget", "expected"), [
    (5_000, 512, "4GB", "Flat"),
    (1_000_000, 512, "4GB", "HNSW32,Flat"),
    (1_000_000, 512, "2.1GB", "IVF4096,Flat"),
    (10_000_000, 512, "1GB", "IVF16384,PQ64"),
    (50_000_000, 512, "1GB", "IVF32768,PQ8"),
])
def test_faiss_index_type_from_memory_budget(count: int, dim: int, budget: str, expected: str) -> None:
    assert choose_index_factory(count, dim, budget) == expected


def test_ids_metadata_and_remove() -> None:
    index = Index("test:anchor", DIM)
    vectors = unit(6, 9)
    assert index.add(vectors[:3], modality="image") == [0, 1, 2]
    assert index.add(vectors[3:], ids=["a", "b", "c"], metadata=[{"x": 1}, {}, {}], modality="text") == ["a", "b", "c"]
    assert index.metadata("a") == {"id": "a", "modality": "text", "x": 1}
    assert index.remove([1, "b"]) == 2
    assert len(index) == 4 and 1 not in index and "a" in index
    result = index.search(vectors[3], k=1)
    assert result.ids == [["a"]] and result.metadata[0][0]["x"] == 1
    assert index.add(vectors[1:2], modality="image") == [3]  # auto ids never reuse a removed id
    assert index.modality_counts() == {"image": 3, "text": 2}


def test_embeddings_and_plain_tensors_are_normalized() -> None:
    index = Index("test:anchor", DIM)
    raw = torch.randn(4, DIM) * 5
    index.add(raw, modality="image")
    torch.testing.assert_close(index.vectors().norm(dim=1), torch.ones(4))
    raw.zero_()  # the index keeps its own copy
    assert float(index.vectors().norm(dim=1).min()) > 0.99
    query = Embeddings.wrap(unit(1, 10), "test:anchor")
    assert index.search(query, k=2).k == 2
