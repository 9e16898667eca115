"""Distributed embedding: 2 torchrun processes vs 1 process on the same images with the `tiny` preset.

Both runs are the real command, ``anybind index build`` (under ``torch.distributed.run`` for the
two-process run), each using the same total number of CPU threads. Prints wall times, the
speed-up as ``ratio`` (1-process time / 2-process time) and checks that the vectors are identical
(max abs diff <= 1e-6, same order). On a machine with CUDA GPUs it repeats with one GPU per process.

    python bench/distributed_embed.py                 # 2,000 images (default)
    python bench/distributed_embed.py --images 200    # quicker
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import describe_machine  # bench/machine.py


def make_images(folder: Path, count: int) -> None:
    """Write `count` random 64x64 PNG images."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for number in range(count):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"{number:05d}.png")


def run(command: list[str], threads: int) -> float:
    """Run `command` with `threads` OpenMP threads per process; return its wall time in seconds."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    """Parse arguments, run both setups, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2, help="total CPU threads, split over the processes")
    parser.add_argument("--part-rows", type=int, default=256)
    args = parser.parse_args()

    import torch

    from anybind import Index

    print(f"CPU: {describe_machine()}; machine shared with other jobs: timings are indicative")
    devices = [("cpu", "cpu")] + ([("cuda", "cuda")] if torch.cuda.device_count() >= 2 else [])
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        make_images(folder / "images", args.images)
        for label, device in devices:
            common = ["index", "build", "-i", "image", str(folder / "images"), "--device", device,
                      "--part-rows", str(args.part_rows), "--model", "tiny"]
            one = run([sys.executable, "-m", "anybind.cli", common[0], common[1], str(folder / f"one-{label}.index"),
                       *common[2:]], args.threads)
            two = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                       "-m", "anybind.cli", common[0], common[1], str(folder / f"two-{label}.index"), *common[2:]],
                      max(1, args.threads // 2))
            a = Index.load(folder / f"one-{label}.index").vectors()
            b = Index.load(folder / f"two-{label}.index").vectors()
            same_order = Index.load(folder / f"one-{label}.index").ids == Index.load(folder / f"two-{label}.index").ids
            diff = float((a - b).abs().max())
            print(f"{label}: {args.images} images | 1 process {one:.1f} s | 2 processes {two:.1f} s | "
                  f"ratio {one / two:.2f} | max abs diff {diff:.1e} | same order {same_order}")
            if diff > 1e-6 or not same_order:
                sys.exit("FAIL: the two runs differ")


if __name__ == "__main__":
    main()
