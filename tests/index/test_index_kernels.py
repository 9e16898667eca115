"""Scan paths of the `fast` backend: CPU dispatch table, every path forced (same results), certification."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from anybind import Index, InputError
from anybind.cli import main
from anybind.index.kernels import PATH_ENV, SCAN_KERNELS, CpuInfo, _read_cpuinfo, choose_scan_path
from anybind.index.quantized import LowPrecisionScan
from anybind.index.threads import faiss_threads, search_threads
from anybind.index.vectors import VectorStore

DIM = 48
KEY = "test:anchor"


def unit(n: int, seed: int, dim: int = DIM) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.fixture(scope="module")
def rows() -> torch.Tensor:
    return unit(5000, 0)


def cpu(*flags: str) -> CpuInfo:
    return CpuInfo(model="test cpu", flags=frozenset(flags), source="test")


@pytest.mark.parametrize("flags, path, reason", [
    (("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8"), "bf16-onednn", "AMX-BF16 tiles"),
    (("avx2", "avx512f", "avx512_bf16", "avx512_vnni"), "int8-fbgemm", "AVX512-VNNI"),  # AMD Zen 4, Cooper Lake
    (("avx2", "avx512f", "avx512_vnni"), "int8-fbgemm", "AVX512-VNNI"),  # Cascade Lake, Ice Lake
    (("avx512f", "avx512_bf16"), "bf16-onednn", "AVX512-BF16"),
    (("avx2", "avx_vnni"), "int8-fbgemm", "AVX-VNNI"),  # Alder Lake
    (("avx2", "fma"), "int8-fbgemm-7bit", "AVX2 without VNNI"),  # AMD Zen 2/3, Haswell..Skylake client
    (("sse4_2",), "fp32", "no int8/bf16 acceleration found"),
    ((), "fp32", "no int8/bf16 acceleration found"),
])
def test_dispatch_table(flags: tuple[str, ...], path: str, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PATH_ENV, raising=False)
    choice = choose_scan_path(cpu(*flags))
    assert (choice.name, choice.reason) == (path, reason)


def test_requested_path_wins_over_the_cpu_and_env_forces_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_scan_path(cpu("amx_bf16"), requested="fp32").name == "fp32"
    monkeypatch.setenv(PATH_ENV, "int8-fbgemm-7bit")
    assert choose_scan_path(cpu("amx_bf16")).name == "int8-fbgemm-7bit"
    assert Index(KEY, 4, backend="fast").search_path()["kernel"] == "int8-fbgemm-7bit"


def test_cpuinfo_is_parsed(tmp_path: Path) -> None:
    text = ("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n\n"
            "processor\t: 1\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2\n")
    (tmp_path / "cpuinfo").write_text(text)
    model, flags = _read_cpuinfo(tmp_path / "cpuinfo") or ("", frozenset())
    assert model == "AMD EPYC 9R14" and {"avx2", "avx512_vnni", "avx512_bf16"} <= flags
    assert _read_cpuinfo(tmp_path / "missing") is None


@pytest.mark.parametrize("path", list(SCAN_KERNELS))
def test_every_path_gives_exact_results(rows: torch.Tensor, path: str) -> None:
    index = Index(KEY, DIM, backend="fast", backend_options={"scan_path": path})
    for start in range(0, len(rows), 1700):  # several segments
        index.add(rows[start:start + 1700], modality="image" if start < 3400 else "audio")
    queries = unit(30, 1)
    expected = (queries @ rows.T).topk(10, dim=1)
    result = index.search(queries, k=10)
    assert torch.tensor(result.ids).equal(expected.indices)
    torch.testing.assert_close(result.scores, expected.values, atol=1e-5, rtol=0)
    audio = (queries @ rows[3400:].T).topk(5, dim=1).indices + 3400
    assert torch.tensor(index.search(queries, k=5, modality="audio").ids).equal(audio)
    assert index.info()["search_path"]["kernel"] == path
    assert index._scan is not None and index._scan.stats.path == path


def test_near_ties_are_not_certified_and_get_rescanned() -> None:
    # 300 rows close to one direction: int8 cannot order them, so the shortlist is not provably enough
    center = unit(1, 3)
    rows = F.normalize(center + 0.003 * torch.randn(300, DIM, generator=torch.Generator().manual_seed(4)), dim=1)
    store = VectorStore(DIM)
    store.append(torch.cat([rows, unit(2000, 5)]).numpy())
    scan = LowPrecisionScan(store, "int8-fbgemm")
    queries = F.normalize(center + 0.01 * unit(4, 6), dim=1)
    scores, positions = scan.search(queries, k=10, candidates=20)
    exact = (queries @ torch.from_numpy(store.as_array()).T).topk(10, dim=1)
    assert positions.equal(exact.indices) and exact.values[:, 9].min() > 0.999  # near-ties, yet exact
    assert scan.stats.rescanned == 4 and scan.stats.certified == 0


def test_random_data_is_certified_without_rescans(rows: torch.Tensor) -> None:
    store = VectorStore(DIM)
    store.append(rows.numpy())
    scan = LowPrecisionScan(store, "int8-fbgemm")
    scan.search(unit(50, 7), k=10)
    assert scan.stats.certified == 50 and scan.stats.rescanned == 0 and scan.stats.shortlist == 100


@pytest.mark.parametrize("options, message", [
    ({"scan_path": "int4"}, r"`scan_path`: expected 'auto' or one of 'bf16-onednn', 'int8-fbgemm', .*got 'int4'"),
    ({"scan_path": "int8", "candidates": 5}, r"`scan_path`: .*got 'int8'"),
    ({"kernel": "fp32"}, r"`backend_options`: unknown option\(s\) kernel for backend 'fast'; "
                         r"allowed: candidates, scan_path"),
])
def test_bad_scan_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        Index(KEY, 4, backend="fast", backend_options=options)


def test_index_info_names_the_search_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = Index(KEY, DIM, backend="fast", backend_options={"scan_path": "bf16-onednn"})
    index.add(unit(20, 8), modality="image")
    index.save(tmp_path / "x.index")
    assert main(["index", "info", str(tmp_path / "x.index")]) == 0
    assert f"search path: bf16-onednn (requested), {torch.get_num_threads()} thread(s)" in capsys.readouterr().out
    assert index.search_path("exact") == {"kernel": "fp32", "reason": "full float32 scan", "threads": search_threads()}


class FakeFaiss:
    """faiss's two OpenMP calls, with a pool of its own (as when faiss is imported before torch)."""

    def __init__(self, threads: int) -> None:
        self.threads, self.calls = threads, []

    def omp_get_max_threads(self) -> int:
        return self.threads

    def omp_set_num_threads(self, threads: int) -> None:
        self.threads = threads
        self.calls.append(threads)


def test_faiss_runs_with_torchs_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeFaiss(torch.get_num_threads() + 3)
    monkeypatch.setitem(sys.modules, "faiss", fake)
    with faiss_threads() as threads:
        assert threads == torch.get_num_threads() == fake.threads
    assert fake.calls == [threads, threads + 3]


def test_faiss_backend_search_uses_torchs_thread_count(rows: torch.Tensor) -> None:
    faiss = pytest.importorskip("faiss")
    index = Index(KEY, DIM, backend="faiss")
    index.add(rows[:500], modality="image")
    seen = []
    original = faiss.IndexFlat.search

    def search(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(faiss.omp_get_max_threads())
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(faiss.IndexFlat, "search", search)
        index.search(unit(3, 9), k=4)
    assert seen and set(seen) == {torch.get_num_threads()}  # every faiss search call (the store may search twice)
