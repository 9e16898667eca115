"""Benchmark of `project_to_views` (PointCLIP V2 realistic projection): speed against the official code,
and steadiness under a concurrent CPU hog.

Prints, for a batch of 1024-point clouds rendered at the anchor's 224 px:
  1. clouds/s of anybind's batched V2 projection and of the peer: the official PointCLIP V2 code
     (``Realistic_Projection.get_img`` + its bilinear resize) when ``--reference PATH`` points at a
     checkout of https://github.com/yangyangyang127/PointCLIP_V2 (MIT; read from there, never
     copied), else a per-view loop of anybind's own function; with the official code it also prints
     the largest pixel difference between the two;
  2. median and p95 seconds per call, quiet and with ``--hogs`` busy-looping processes running
     (goal: p95 with the hog <= 2x the quiet median), for anybind's pooled single-threaded-worker
     path and for the same chunks run with multi-threaded torch ops (the previous implementation);
  3. the share of projection time in a full ``model.embed("pointcloud", ...)`` through a random-init
     ViT-B-32 at 224 px (``--embed-clouds``, 0 to skip).

Timings on a shared CPU are noisy; the machine's load average is printed. Run:
``python bench/projection.py [--reference /tmp/PointCLIP_V2] [--clouds 32] [--threads 2] [--calls 20]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

import anybind
from anybind.modalities.pointcloud.config import load_preprocess
from anybind.modalities.pointcloud.projection import (REALISTIC_CHUNK, method_views, project_to_views, realistic_grid,
                                                      realistic_image, rotate_into_views, view_rotations)
from machine import timed_runs  # bench/machine.py

REFERENCE_FILE = "zeroshot_cls/trainers/mv_utils_zs.py"  # the official zero-shot realistic projection


def unit_clouds(count: int, points: int, seed: int = 0) -> torch.Tensor:
    """``[count, points, 3]`` random clouds scaled into the unit sphere."""
    clouds = torch.randn(count, points, 3, generator=torch.Generator().manual_seed(seed)) * torch.tensor([1.0, 0.6, 0.3])
    return clouds / clouds.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True)


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


# ----------------------------------------------------------------------------- peers
def per_view_loop(clouds: torch.Tensor, size: int) -> torch.Tensor:
    """Fallback peer: one `project_to_views` call per cloud and per view, results stacked."""
    views = len(method_views("realistic").view_angles)
    return torch.stack([torch.cat([project_to_views(cloud, "realistic", views=[v], size=size)[0] for v in range(views)])
                        for cloud in clouds])


def threaded_ops(clouds: torch.Tensor, size: int) -> torch.Tensor:
    """The previous implementation: the same chunks, each op multi-threaded by torch, in the caller's thread."""
    constants = load_preprocess().realistic
    in_view = rotate_into_views(clouds, view_rotations("realistic"))
    flat = in_view.reshape(-1, 1, *in_view.shape[2:])
    images = torch.cat([realistic_image(realistic_grid(flat[start:start + REALISTIC_CHUNK], constants,
                                                       constants.resolution), constants)
                        for start in range(0, len(flat), REALISTIC_CHUNK)])
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=True)
    return images.view(*in_view.shape[:2], 1, size, size).expand(-1, -1, 3, -1, -1)


@contextlib.contextmanager
def cpu_only_reference() -> Iterator[None]:
    """Let the official code run on CPU: ``.cuda()`` becomes a no-op, and `torch_scatter.scatter`
    (not installed here) is provided by torch's own ``scatter_reduce_`` (same max-with-`out` semantics)."""
    tensor_cuda, module_cuda = torch.Tensor.cuda, torch.nn.Module.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    added = "torch_scatter" not in sys.modules and importlib.util.find_spec("torch_scatter") is None
    if added:
        shim = types.ModuleType("torch_scatter")

        def scatter(src: torch.Tensor, index: torch.Tensor, dim: int = -1, out: torch.Tensor | None = None,
                    reduce: str = "sum") -> torch.Tensor:
            assert out is not None and reduce == "max"
            return out.scatter_reduce_(dim, index, src, reduce="amax", include_self=True)

        shim.scatter = scatter  # type: ignore[attr-defined]
        sys.modules["torch_scatter"] = shim
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.nn.Module.cuda = tensor_cuda, module_cuda  # type: ignore[method-assign]
        if added:
            del sys.modules["torch_scatter"]


def official_projection(checkout: Path) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``(clouds [B, N, 3], size) -> [B, V, 3, size, size]`` by the official PointCLIP V2 code in `checkout`."""
    source = checkout / REFERENCE_FILE if checkout.is_dir() else checkout
    if not source.is_file():
        raise SystemExit(f"--reference: expected a PointCLIP_V2 checkout containing {REFERENCE_FILE}, got {checkout}")
    spec = importlib.util.spec_from_file_location("pointclip_v2_mv_utils_zs", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with cpu_only_reference():
        spec.loader.exec_module(module)
        projector = module.Realistic_Projection()

    def render(clouds: torch.Tensor, size: int) -> torch.Tensor:
        with cpu_only_reference():
            images = projector.get_img(clouds)
        # as the official `real_proj`: bilinear, align_corners=True, to the CLIP input size
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=True)
        return images.view(len(clouds), -1, *images.shape[1:])

    return render


# ----------------------------------------------------------------------------- benchmarks
@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """Run `count` busy-looping Python processes for the duration of the block."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    time.sleep(0.5)
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def bench_speed(clouds: torch.Tensor, size: int, reference: Path | None, calls: int) -> None:
    """Print clouds/s of anybind's projection and of the peer, and (with the official code) their difference."""
    ours = lambda: project_to_views(clouds, "realistic", size=size)  # noqa: E731
    if reference is not None:
        official = official_projection(reference)
        name = f"official PointCLIP V2 ({REFERENCE_FILE})"
        peer = lambda: official(clouds, size)  # noqa: E731
        difference = (ours() - peer()).abs()
        print(f"  largest pixel difference anybind vs official: {float(difference.max()):.2e} "
              f"(pixels differing by > 1e-4: {float((difference > 1e-4).float().mean()) * 100:.3f}%)")
    else:
        name = "per-view loop of anybind (pass --reference PATH for the official code)"
        peer = lambda: per_view_loop(clouds, size)  # noqa: E731
    fast = statistics.median(timed_runs(ours, calls))
    slow = statistics.median(timed_runs(peer, max(1, calls // 4)))
    count = len(clouds)
    print(f"  anybind batched: {count / fast:8.1f} clouds/s | {name}: {count / slow:8.1f} clouds/s | "
          f"ratio {slow / fast:5.1f}x")


def bench_steadiness(clouds: torch.Tensor, size: int, calls: int, hogs: int) -> None:
    """Print median/p95 seconds per call, quiet and under `hogs` CPU hogs, for the pooled and threaded-op paths."""
    paths = {"anybind (single-threaded workers)": lambda: project_to_views(clouds, "realistic", size=size),
             "threaded torch ops (previous)": lambda: threaded_ops(clouds, size)}
    for name, work in paths.items():
        quiet = timed_runs(work, calls)
        with cpu_hogs(hogs):
            loaded = timed_runs(work, calls)
        ratio = p95(loaded) / statistics.median(quiet)
        print(f"  {name:<34} quiet median {statistics.median(quiet):6.3f}s p95 {p95(quiet):6.3f}s | "
              f"with {hogs} hog(s): median {statistics.median(loaded):6.3f}s p95 {p95(loaded):6.3f}s | "
              f"p95(hog) / quiet median {ratio:4.2f}x {'(goal <= 2x: met)' if ratio <= 2 else '(goal <= 2x: missed)'}")


def bench_embed_share(clouds: torch.Tensor, repeats: int) -> None:
    """Print the share of projection (render) time in a full embed through ViT-B-32 at 224 px."""
    spec = {"format": "anybind.model", "name": "bench-vit-b-32",
            "anchor": {"kind": "openclip", "model": "ViT-B-32", "seed": 0},
            "modalities": {"pointcloud": {"encoder": "projection", "encoder_args": {"method": "realistic"}}}}
    model = anybind.load(spec, device="cpu")
    encoder = model.encoder("pointcloud")
    with torch.inference_mode():
        batch = model.bound("pointcloud").modality.load(list(clouds))
        render = min(timed_runs(lambda: encoder.render(batch), repeats))
    total = min(timed_runs(lambda: model.embed("pointcloud", clouds, batch_size=len(clouds)), repeats))
    print(f"full embed, ViT-B-32 random init at 224 px, realistic, {len(clouds)} clouds x {encoder.num_views} views: "
          f"{total / len(clouds) * 1000:.0f} ms/cloud; projection {render / len(clouds) * 1000:.1f} ms/cloud = "
          f"{100 * render / total:.1f}% of the embed")


def main() -> None:
    """Parse arguments and run the benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=None,
                        help="checkout of the official PointCLIP_V2 repository (the peer); default: per-view loop")
    parser.add_argument("--clouds", type=int, default=32, help="clouds per call")
    parser.add_argument("--points", type=int, default=1024, help="points per cloud")
    parser.add_argument("--size", type=int, default=224, help="output image side (the anchor's input size)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per measurement")
    parser.add_argument("--hogs", type=int, default=1, help="busy-looping processes for the loaded measurement")
    parser.add_argument("--embed-clouds", type=int, default=4, help="clouds in the full-embed measurement (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} (other jobs share this machine when it exceeds the CPU count)")
    clouds = unit_clouds(args.clouds, args.points)
    print(f"PointCLIP V2 realistic projection of {args.clouds} clouds x {args.points} points -> 10 views at {args.size} px")
    with torch.inference_mode():
        bench_speed(clouds, args.size, args.reference, args.calls)
        bench_steadiness(clouds, args.size, args.calls, args.hogs)
    if args.embed_clouds:
        bench_embed_share(clouds[:args.embed_clouds], 2)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
