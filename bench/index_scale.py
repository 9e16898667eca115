"""An index beyond memory: faiss built streaming from shards within a memory budget, reloaded memory-mapped.

Writes `--vectors` random unit vectors (`--dim`, around 1,024 cluster centres, like real
embeddings rather than uniform noise) as an anybind index folder chunk by chunk, then
in fresh subprocesses (so peak RSS is their own): builds the faiss index from the shards under
`--memory-budget` and persists it; reloads it as a restarted process would (mmap, no training)
and searches `--queries` queries. Prints build time, peak RSS (must stay under the budget),
on-disk size, load time (goal < 2 s), recall@10 against exact search, and queries/s with the
ratio against anybind's exact backend measured in the same run.

Recall is that of the raw faiss index (no float32 re-ranking); within a cluster the neighbours
differ only by isotropic noise, which is hard for PQ codes, so IVF-PQ recall here is a lower bound.

    python bench/index_scale.py                                                # quick: 300,000 x 512, 1GB
    python bench/index_scale.py --vectors 5000000 --dim 512 --memory-budget 2GB  # ~10 GB of vectors on disk
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

sys.path.insert(0, str(Path(__file__).parent))
from distributed_embed import cpu_model  # noqa: E402

CHUNK = 65536


def peak_rss() -> int:
    """This process's peak resident set size in bytes (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


CLUSTERS = 1024  # the data is clustered like real embeddings, not uniform on the sphere (the worst case for ANN)
SPREAD = 0.7  # noise norm relative to the cluster centre


def random_rows(count: int, dim: int, seed: int) -> np.ndarray:
    """`count` seeded unit vectors around `CLUSTERS` fixed centres."""
    centres = np.random.default_rng(12345).standard_normal((CLUSTERS, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((count, dim), dtype=np.float32) * (SPREAD / np.sqrt(dim))
    rows = centres[rng.integers(0, CLUSTERS, count)] + noise
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def make_index(folder: Path, count: int, dim: int, budget: str) -> None:
    """Write the index folder chunk by chunk, without holding the vectors in memory."""
    from anybind.index.storage import SHARD_ROWS, StreamedShard, write_index

    def chunks(first: int, rows: int):  # type: ignore[no-untyped-def]
        for start in range(first, first + rows, CHUNK):  # SHARD_ROWS is a multiple of CHUNK
            yield random_rows(min(CHUNK, first + rows - start), dim, seed=start)

    shards = (StreamedShard(rows=min(SHARD_ROWS, count - first), dim=dim,
                            chunks=lambda f=first: chunks(f, min(SHARD_ROWS, count - f)))
              for first in range(0, count, SHARD_ROWS))
    manifest = {"anchor_key": "bench:random", "anchor": None, "dim": dim, "count": count, "backend": "faiss",
                "backend_options": {"memory_budget": budget}, "next_id": count, "modalities": {"random": count}}
    write_index(folder, manifest, shards, ({"id": i, "modality": "random"} for i in range(count)))


def worker(stage: str, folder: Path, budget: str) -> dict:
    """Run one stage in this (fresh) process and return its measurements."""
    if stage == "build":
        from anybind.index.faiss_store import build_faiss_index, resident_bytes

        baseline = resident_bytes()
        start = time.perf_counter()
        tag = build_faiss_index(folder, {"memory_budget": budget})
        return {"seconds": time.perf_counter() - start, "peak_rss": peak_rss(), "baseline_rss": baseline, **tag}
    import torch

    from anybind import Index

    queries = torch.from_numpy(np.load(folder.parent / "queries.npy"))
    start = time.perf_counter()  # after the imports: what a restarted server pays to open the index
    backend = "faiss" if stage == "load" else "exact"
    index = Index.load(folder, verify=False, backend=backend)
    index.search(queries[:1], k=10)  # the first search maps the faiss file (or warms the exact scan)
    loaded = time.perf_counter() - start
    begin = time.perf_counter()
    result = index.search(queries, k=10)
    seconds = time.perf_counter() - begin
    np.save(folder.parent / f"{stage}-ids.npy", np.asarray(result.ids, dtype=np.int64))
    return {"load_seconds": loaded, "qps": len(queries) / seconds, "peak_rss": peak_rss()}


def call(stage: str, folder: Path, budget: str, threads: int) -> dict:
    """Run `worker(stage)` in a subprocess."""
    import os

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, __file__, "--worker", stage, "--folder", str(folder), "--memory-budget",
                           budget], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Parse arguments; make the data; build, reload and search; print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=300_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--memory-budget", default="1GB")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folder", default=None, help="work folder (default: a temp folder, deleted)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.folder), args.memory_budget)))
        return

    from anybind.index.faiss_backend import parse_bytes

    budget = parse_bytes(args.memory_budget)
    print(f"CPU: {cpu_model()}; machine shared with other jobs: timings are indicative")
    with tempfile.TemporaryDirectory(dir=args.folder) as temp:
        folder = Path(temp) / "bench.index"
        start = time.perf_counter()
        make_index(folder, args.vectors, args.dim, args.memory_budget)
        np.save(Path(temp) / "queries.npy", random_rows(args.queries, args.dim, seed=-1 % 2**32))
        print(f"data: {args.vectors} x {args.dim} float32 = {args.vectors * args.dim * 4 / 2**30:.2f} GiB on disk "
              f"(written in {time.perf_counter() - start:.0f} s); memory budget {args.memory_budget}")
        built = call("build", folder, args.memory_budget, args.threads)
        loaded = call("load", folder, args.memory_budget, args.threads)
        exact = call("exact", folder, args.memory_budget, args.threads)
        found, truth = np.load(Path(temp) / "load-ids.npy"), np.load(Path(temp) / "exact-ids.npy")
        recall = np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])
        print(f"index type        {built['factory']} (trained on {built['train_rows']} rows)")
        print(f"build             {built['seconds']:.1f} s, peak RSS {built['peak_rss'] / 2**20:.0f} MiB "
              f"(process baseline {built['baseline_rss'] / 2**20:.0f} MiB) vs budget {budget / 2**20:.0f} MiB: "
              f"{'within' if built['peak_rss'] <= budget else 'OVER'}")
        print(f"on disk           faiss {built['bytes'] / 2**20:.1f} MiB + vectors "
              f"{args.vectors * args.dim * 4 / 2**20:.0f} MiB")
        print(f"load after restart {loaded['load_seconds']:.2f} s (mmap, no training; goal < 2 s), "
              f"peak RSS {loaded['peak_rss'] / 2**20:.0f} MiB")
        print(f"recall@10 vs exact on {args.queries} queries: {recall:.3f} (build-time sample estimate "
              f"{built['recall_at_10']})")
        print(f"queries/s         faiss {loaded['qps']:.0f} | anybind exact {exact['qps']:.0f} | "
              f"ratio {loaded['qps'] / exact['qps']:.1f}")


if __name__ == "__main__":
    main()
