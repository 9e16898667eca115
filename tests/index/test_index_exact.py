"""`anybind.index.exact`: the lane-parallel CPU scan gives the brute-force top k for any lane count,
chunking, segmenting and row mask; `anybind.workers.run_lanes` shares work and keeps thread counts."""

from __future__ import annotations

import threading
import time

import pytest
import torch
import torch.nn.functional as F

from anybind.index.exact import exact_search, lanes_top_k
from anybind.index.quantized import LowPrecisionScan
from anybind.index.vectors import VectorStore
from anybind.workers import run_lanes

DIM = 32


def unit(n: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.fixture(scope="module")
def store() -> VectorStore:
    rows = unit(3000, 0)
    store = VectorStore(DIM)
    for start, end in ((0, 1100), (1100, 2500), (2500, 3000)):  # three segments of unequal sizes
        store.append(rows[start:end].numpy().copy())
    return store


@pytest.fixture()
def threads() -> object:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_exact_search_equals_brute_force_for_any_lane_count(store: VectorStore, workers: int, masked: bool,
                                                           threads: object) -> None:
    torch.set_num_threads(workers)
    rows = torch.from_numpy(store.as_array())
    mask = torch.arange(len(rows)) % 3 != 1 if masked else None
    queries = unit(70, 1)
    scores = queries @ rows.T
    if mask is not None:
        scores[:, ~mask] = float("-inf")
    expected = scores.topk(12, dim=1)
    got_scores, got_positions = exact_search(store, queries, 12, mask, chunk_rows=256, query_block=32)
    assert got_positions.equal(expected.indices)
    torch.testing.assert_close(got_scores, expected.values, rtol=0, atol=1e-6)
    assert torch.get_num_threads() == workers  # the lanes' single-threaded setting does not leak


@pytest.mark.parametrize("workers", [1, 2])
def test_fast_scan_with_lanes_is_exact(store: VectorStore, workers: int, threads: object) -> None:
    torch.set_num_threads(workers)
    scan = LowPrecisionScan(store, "int8-fbgemm", chunk_rows=200)
    queries = unit(40, 2)
    expected = (queries @ torch.from_numpy(store.as_array()).T).topk(10, dim=1)
    scores, positions = scan.search(queries, k=10)
    assert positions.equal(expected.indices) and scan.stats.certified == 40


def test_lanes_top_k_merges_lanes_that_saw_different_chunks() -> None:
    table = torch.arange(40, dtype=torch.float32).reshape(1, 40)  # one query; score = position
    chunks = [(start, table[:, start:start + 4]) for start in range(0, 40, 4)]
    scores, positions = lanes_top_k(chunks, lambda block: block.clone(), queries=1, k=5, workers=3)
    assert positions.tolist() == [[39, 38, 37, 36, 35]] and scores.tolist() == [[39.0, 38.0, 37.0, 36.0, 35.0]]


def test_run_lanes_shares_items_so_a_slow_lane_takes_fewer() -> None:
    def lane(items: object) -> list[int]:
        taken = []
        for item in items:  # type: ignore[attr-defined]
            taken.append(item)
            if item == 0:
                time.sleep(0.3)  # this lane is "descheduled" on its first item
        return taken

    lanes = run_lanes(range(20), lane, workers=2)
    assert sorted(lanes[0] + lanes[1]) == list(range(20))  # every item exactly once
    slow = next(taken for taken in lanes if 0 in taken)
    assert len(slow) < 5  # the other lane did the rest meanwhile


def test_run_lanes_inline_with_one_worker_and_errors_propagate() -> None:
    caller = threading.current_thread()
    assert run_lanes([1, 2], lambda items: (threading.current_thread() is caller, list(items)), 1) == [(True, [1, 2])]
    seen = run_lanes(range(4), lambda items: (torch.get_num_threads(), list(items)), 2)
    assert {count for count, _ in seen} == {1}

    def failing(items: object) -> None:
        for _ in items:  # type: ignore[attr-defined]
            raise ValueError("lane failed")

    with pytest.raises(ValueError, match="lane failed"):
        run_lanes(range(4), failing, 2)
