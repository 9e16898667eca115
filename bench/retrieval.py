"""Retrieval speed: anybind exact (float32 scan), anybind fast (low-precision scan + float32 re-rank) and
faiss IndexFlatIP, on random unit vectors (default 1,000,000 x 512, 1,000 queries, top-10, 2 threads).

Prints the CPU model and flags, the scan path the fast backend chose, this machine's roofline
(memory bandwidth and peak matmul rates, measured in CPU time), then every method's queries/s, ratio to faiss
IndexFlatIP, share of the roofline and recall@k against exact float32 search. Each engine runs in
its own long-lived process (anybind methods share one, faiss has one) on the same data; the
methods are timed in interleaved rounds, so load from other jobs hits them alike, and each ratio
is taken within a round (median over rounds, spread shown). The last line is
``ratio fast/faiss: X  ratio exact/faiss: Y  recall@10: Z``. Goals: fast >= 2x, exact >= 1x,
recall@10 >= 0.999.

    python bench/retrieval.py                      # full size (~7 GB RAM, several minutes on 2 cores)
    python bench/retrieval.py --n 200000 --rounds 5
    python bench/retrieval.py --paths all          # also time every scan path the fast backend has
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
from machine import timed_runs  # bench/machine.py

ENGINES = {"anybind-exact": "anybind", "anybind-fast": "anybind", "faiss-flatip": "faiss"}


def memory_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB, from /proc/self/status."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def make_data(folder: Path, n: int, dim: int, queries: int, seed: int) -> None:
    """Write `n` random unit vectors as an anybind index folder, and the queries as queries.npy."""
    import torch
    import torch.nn.functional as F

    from anybind import Index

    generator = torch.Generator().manual_seed(seed)
    index = Index("bench:random", dim)
    for start in range(0, n, 262144):
        rows = F.normalize(torch.randn(min(262144, n - start), dim, generator=generator), dim=1)
        index.add(rows, modality="random")
    index.save(folder / "data.index")
    np.save(folder / "queries.npy", F.normalize(torch.randn(queries, dim, generator=generator), dim=1).numpy())


# ----------------------------------------------------------------------------- roofline
def best_core_seconds(work: Any, repeats: int, threads: int) -> float:
    """Fastest of `repeats` runs of `work()` after one warm-up, in process CPU seconds / `threads`.

    CPU time counts only the time this process ran, so on a shared machine it estimates what
    the run would take with `threads` cores to itself.
    """
    return min(timed_runs(work, repeats, time.process_time)) / threads


def measure_roofline(dim: int, threads: int) -> dict[str, float]:
    """Memory read bandwidth (bytes/s) and peak matmul rates (op/s) of `threads` cores of this machine.

    Bandwidth: summing a 1 GiB float32 array. Peaks: a ``[1024, dim] x [dim, 4096]`` product in
    float32 (BLAS), bf16 (oneDNN) and int8 (fbgemm dynamic linear), which stays in cache, run
    single-threaded as each lane of the scan runs it, times `threads` cores. Timed in CPU seconds
    (`best_core_seconds`).
    """
    import torch

    from anybind.index.kernels import SCAN_KERNELS

    big = torch.ones(1 << 28)
    bandwidth = big.numel() * 4 / best_core_seconds(big.sum, 5, threads)
    del big
    queries = torch.randn(1024, dim)
    rows = torch.randn(4096, dim)
    flops = 2 * 1024 * 4096 * dim
    peaks = {}
    torch.set_num_threads(1)
    try:
        for name in ("fp32", "bf16-onednn", "int8-fbgemm"):
            kernel = SCAN_KERNELS[name]
            packed = kernel.pack(rows)
            peaks[name] = threads * flops / best_core_seconds(lambda: kernel.scores(queries, packed), 10, 1)
    finally:
        torch.set_num_threads(threads)
    return {"bandwidth": bandwidth, **peaks}


def roofline_seconds(method: str, path: str, n: int, dim: int, queries: int, roof: dict[str, float]) -> float:
    """Lower bound on a method's time: max(bytes scanned / bandwidth, FLOPs / peak rate of its precision)."""
    bytes_per_value = {"fp32": 4, "bf16-onednn": 2}.get(path, 1)
    peak = roof.get(path if path in roof else "int8-fbgemm" if path.startswith("int8") else "fp32", roof["fp32"])
    return max(n * dim * bytes_per_value / roof["bandwidth"], 2 * queries * n * dim / peak)


# ----------------------------------------------------------------------------- workers
def serve(engine: str, folder: Path, k: int, threads: int, paths: list[str]) -> None:
    """Worker loop: load the data once, then answer ``run METHOD`` lines with one timed search each."""
    import torch

    torch.set_num_threads(threads)
    queries_np = np.load(folder / "queries.npy")
    queries = torch.from_numpy(queries_np)
    searches: dict[str, Any] = {}
    info: dict[str, Any] = {}
    scans: dict[str, Any] = {}
    index: Any = None
    if engine == "anybind":
        from anybind import Index
        from anybind.index.quantized import LowPrecisionScan

        start = time.perf_counter()
        index = Index.load(folder / "data.index", mmap=False, verify=False, backend="fast")
        info["load_s"] = time.perf_counter() - start
        searches["anybind-exact"] = lambda: index.search(queries, k=k, backend="exact")
        searches["anybind-fast"] = lambda: index.search(queries, k=k, backend="fast")
        info["path"] = index.search_path("fast")
        start = time.perf_counter()
        index.search(queries[:1], k=k, backend="fast")  # packs the low-precision copy
        info["build_s"] = {"anybind-exact": 0.0, "anybind-fast": time.perf_counter() - start}
        for path in paths:
            scans[path] = LowPrecisionScan(index._store, path)
            start = time.perf_counter()
            scans[path].prepare()
            info["build_s"][f"anybind-fast:{path}"] = time.perf_counter() - start
            searches[f"anybind-fast:{path}"] = lambda scan=scans[path]: scan.search(queries, k)[1]
    else:
        import faiss

        from anybind.index.storage import read_manifest

        start = time.perf_counter()
        shard = read_manifest(folder / "data.index")["vectors"]
        vectors = np.concatenate([np.load(folder / "data.index" / entry["file"]) for entry in shard])
        faiss.omp_set_num_threads(threads)
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(vectors)
        del vectors
        info["build_s"] = {"faiss-flatip": time.perf_counter() - start}
        searches["faiss-flatip"] = lambda: flat.search(queries_np, k)[1]
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        method = line.split()[1]
        start, cpu_start = time.perf_counter(), time.process_time()
        found = searches[method]()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        ids = np.asarray(found.ids if hasattr(found, "ids") else found)
        np.save(folder / f"{method}.npy", ids)
        reply: dict[str, Any] = {"wall_s": seconds, "cpu_s": cpu_seconds, "rss_mb": memory_mb()[0]}
        scan = scans.get(method.partition(":")[2]) or (index._scan if method == "anybind-fast" else None)
        if scan is not None:
            reply["certified"], reply["rescanned"] = scan.stats.certified, scan.stats.rescanned
        print(json.dumps(reply), flush=True)


class Worker:
    """A `serve` subprocess and its pipes."""

    def __init__(self, engine: str, folder: Path, args: argparse.Namespace, paths: list[str]) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", engine, "--folder", str(folder), "--k", str(args.k),
             "--threads", str(args.threads), "--paths", *(paths or ["none"])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._reply()

    def _reply(self) -> dict[str, Any]:
        stream: IO[str] | None = self.process.stdout
        line = stream.readline() if stream is not None else ""
        if not line:
            raise RuntimeError(f"worker {self.process.args} exited with {self.process.wait()}")
        return json.loads(line)

    def run(self, method: str) -> dict[str, Any]:
        """Time one search of all queries by `method`."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"run {method}\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self) -> None:
        """End the worker."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's true top-k ids that were found."""
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def describe_cpu() -> None:
    """Print the CPU model, its decisive flags and what torch was built with."""
    import torch

    from anybind.index.kernels import choose_scan_path, detect_cpu

    cpu = detect_cpu()
    choice = choose_scan_path()
    print(f"CPU: {cpu.model} ({os.cpu_count()} logical CPUs); flags: {' '.join(cpu.decisive_flags()) or 'none'} "
          f"(from {cpu.source}); torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"quantized engine {torch.backends.quantized.engine}")
    print(f"fast backend scan path: {choice.name} ({choice.kernel.description}; {choice.reason})")


def main() -> None:
    """Parse arguments, make data, time every method in interleaved rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="index size (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch and faiss threads (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default: %(default)s)")
    parser.add_argument("--paths", nargs="+", default=[],
                        help="also time the fast backend forced onto these scan paths ('all' for every one)")
    parser.add_argument("--worker", choices=("anybind", "faiss"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from anybind.index.kernels import SCAN_KERNELS

    paths = list(SCAN_KERNELS) if args.paths == ["all"] else [p for p in args.paths if p != "none"]
    if args.worker:
        serve(args.worker, Path(args.folder), args.k, args.threads, paths)
        return
    import torch

    torch.set_num_threads(args.threads)
    describe_cpu()
    load_start = os.getloadavg()
    roof = measure_roofline(args.dim, args.threads)
    print(f"roofline ({args.threads} cores, from CPU time): memory read {roof['bandwidth'] / 1e9:.1f} GB/s; peak matmul "
          + ", ".join(f"{name} {roof[name] / 1e9:.0f} G{'op' if name.startswith('int8') else 'FLOP'}/s"
                      for name in ("fp32", "bf16-onednn", "int8-fbgemm")))
    with tempfile.TemporaryDirectory(prefix="anybind-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        make_data(folder, args.n, args.dim, args.queries, seed=0)
        print(f"data: {args.n} x {args.dim} random unit vectors, {args.queries} queries, top-{args.k}, "
              f"{args.threads} threads (made in {time.perf_counter() - start:.1f}s); load average "
              f"{load_start[0]:.1f} at start", flush=True)
        workers = {"anybind": Worker("anybind", folder, args, paths), "faiss": Worker("faiss", folder, args, [])}
        chosen_path = workers["anybind"].info["path"]["kernel"]
        methods = [*ENGINES, *(f"anybind-fast:{path}" for path in paths)]
        runs: dict[str, list[dict[str, Any]]] = {method: [] for method in methods}
        for round_number in range(args.rounds):
            order = methods[round_number % len(methods):] + methods[:round_number % len(methods)]
            for method in order:
                runs[method].append(workers[ENGINES.get(method, "anybind")].run(method))
            print(f"  round {round_number + 1}: " + ", ".join(f"{m} {runs[m][-1]['wall_s']:.2f}s" for m in methods),
                  flush=True)
        load_end = os.getloadavg()
        truth = np.load(folder / "anybind-exact.npy")
        recalls = {method: recall_at_k(np.load(folder / f"{method}.npy"), truth) for method in methods}
        build = {**workers["anybind"].info["build_s"], **workers["faiss"].info["build_s"]}
        for worker in workers.values():
            worker.close()
    peer = runs["faiss-flatip"]
    print(f"\n{'method':<28} {'queries/s':>10} {'vs faiss (spread)':>22} {'CPU s':>7} {'roofline':>9} "
          f"{'recall@' + str(args.k):>10} {'build s':>8} {'RSS MiB':>8}")
    ratios = {}
    for method in methods:
        walls = [r["wall_s"] for r in runs[method]]
        per_round = [p["wall_s"] / r["wall_s"] for p, r in zip(peer, runs[method])]
        ratios[method] = statistics.median(per_round)
        path = "fp32" if method in ("anybind-exact", "faiss-flatip") else method.partition(":")[2] or chosen_path
        bound = roofline_seconds(method, path, args.n, args.dim, args.queries, roof)
        median_wall = statistics.median(walls)
        spread = f"{ratios[method]:.2f}x ({min(per_round):.2f}-{max(per_round):.2f})"
        cpu_seconds = statistics.median(r["cpu_s"] for r in runs[method])
        print(f"{method:<28} {args.queries / median_wall:>10.1f} {spread:>22} "
              f"{cpu_seconds:>7.1f} {100 * bound * args.threads / cpu_seconds:>8.0f}% "
              f"{recalls[method]:>10.4f} {build.get(method, 0):>8.1f} {runs[method][-1]['rss_mb']:>8.0f}")
    fast = runs["anybind-fast"][-1]
    print(f"(fast path {chosen_path}: {fast.get('certified', '?')}/{args.queries} queries certified, "
          f"{fast.get('rescanned', '?')} rescanned exactly; roofline = max(bytes / bandwidth, FLOPs / peak) "
          f"against the median CPU seconds / threads; recall against anybind-exact; load average {load_start[0]:.1f} -> "
          f"{load_end[0]:.1f} on {os.cpu_count()} CPUs{' (shared machine)' if load_end[0] > args.threads else ''})")
    print(f"ratio fast/faiss: {ratios['anybind-fast']:.2f}  ratio exact/faiss: {ratios['anybind-exact']:.2f}  "
          f"recall@{args.k}: {recalls['anybind-fast']:.4f}")


if __name__ == "__main__":
    main()
