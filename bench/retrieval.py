"""Retrieval speed: anybind exact, anybind fast exact (int8 scan + float32 re-rank), faiss IndexFlatIP,
and a naive ``torch.topk(q @ X.T)``, on random unit vectors (default 1,000,000 x 512, 1,000 queries, top-10).

Each method runs in its own subprocess (so resident memory is its own) on the same data, saved
once as an anybind index folder. Prints queries/s, recall@10 against exact float32 search, and
memory; ratios are against faiss IndexFlatIP measured in the same run. Goal: fast exact >= 2x
IndexFlatIP at recall@10 >= 0.999.

    python bench/retrieval.py               # full size (needs ~8 GB RAM, a few minutes on 2 cores)
    python bench/retrieval.py --n 100000    # smaller
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("anybind-exact", "anybind-fast", "faiss-flatip", "naive-topk")


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


def run_worker(method: str, folder: Path, k: int, threads: int) -> dict[str, float]:
    """Build and time one method; save its ids to ``<method>.npy``; return the measurements."""
    import torch

    torch.set_num_threads(threads)
    queries_np = np.load(folder / "queries.npy")
    queries = torch.from_numpy(queries_np)
    start = time.perf_counter()
    if method.startswith("anybind"):
        from anybind import Index

        index = Index.load(folder / "data.index", mmap=False, verify=False,
                           backend="fast" if method == "anybind-fast" else "exact")
        index.search(queries[:1], k=k)  # builds the int8 copy for the fast backend
        search = lambda: np.asarray(index.search(queries, k=k).ids)  # noqa: E731
    else:
        from anybind.index.storage import read_manifest

        shard = read_manifest(folder / "data.index")["vectors"]
        vectors = np.concatenate([np.load(folder / "data.index" / entry["file"]) for entry in shard])
        if method == "faiss-flatip":
            import faiss

            faiss.omp_set_num_threads(threads)
            flat = faiss.IndexFlatIP(vectors.shape[1])
            flat.add(vectors)
            del vectors
            search = lambda: flat.search(queries_np, k)[1]  # noqa: E731
        else:
            matrix = torch.from_numpy(vectors)
            search = lambda: torch.topk(queries @ matrix.T, k, dim=1).indices.numpy()  # noqa: E731
    build_seconds = time.perf_counter() - start
    start, cpu_start = time.perf_counter(), time.process_time()
    ids = search()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    np.save(folder / f"{method}.npy", ids)
    current, peak = memory_mb()
    return {"build_s": build_seconds, "search_s": seconds, "qps": len(queries) / seconds, "cpu_s": cpu_seconds,
            "rss_mb": current, "peak_rss_mb": peak}


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's true top-k ids that were found."""
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def main() -> None:
    """Parse arguments, make data, run every method in a subprocess, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="index size (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch and faiss threads (default: %(default)s)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args.worker, Path(args.folder), args.k, args.threads)))
        return
    with tempfile.TemporaryDirectory(prefix="anybind-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        make_data(folder, args.n, args.dim, args.queries, seed=0)
        print(f"data: {args.n} x {args.dim} random unit vectors, {args.queries} queries, top-{args.k}, "
              f"{args.threads} threads (made in {time.perf_counter() - start:.1f}s)")
        results = {}
        for method in args.methods:
            done = subprocess.run([sys.executable, __file__, "--worker", method, "--folder", tmp, "--k", str(args.k),
                                   "--threads", str(args.threads)], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{method}: failed\n{done.stderr[-2000:]}")
                continue
            results[method] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  {method} done: {results[method]['search_s']:.2f}s", flush=True)
        truth_method = "anybind-exact" if "anybind-exact" in results else next(iter(results))
        truth = np.load(folder / f"{truth_method}.npy")
        peer = results.get("faiss-flatip", {}).get("qps")
        peer_cpu = results.get("faiss-flatip", {}).get("cpu_s")
        print(f"\n{'method':<16} {'queries/s':>10} {'vs IndexFlatIP':>15} {'CPU s':>7} {'vs (CPU)':>9} "
              f"{'recall@' + str(args.k):>10} {'build s':>8} {'RSS MiB':>8} {'peak MiB':>9}")
        for method, r in results.items():
            recall = recall_at_k(np.load(folder / f"{method}.npy"), truth)
            ratio = f"{r['qps'] / peer:.2f}x" if peer else "n/a"
            cpu_ratio = f"{peer_cpu / r['cpu_s']:.2f}x" if peer_cpu else "n/a"
            print(f"{method:<16} {r['qps']:>10.1f} {ratio:>15} {r['cpu_s']:>7.1f} {cpu_ratio:>9} {recall:>10.4f} {r['build_s']:>8.1f} "
                  f"{r['rss_mb']:>8.0f} {r['peak_rss_mb']:>9.0f}")
        print(f"(recall against {truth_method}; each method ran once, in its own process, on a shared machine; "
              "'vs (CPU)' compares process CPU seconds, steadier than wall time when other jobs share the cores)")


if __name__ == "__main__":
    main()
