"""Benchmark of `project_to_views`: batched fast path vs a per-view loop, and its share of a 3D embed.

Prints, for 1024-point clouds:
  1. clouds/s of the batched path (all clouds and views in one call) and of a per-view loop
     (one call per cloud and view) for each method, and their ratio (goal >= 10x);
  2. the share of projection time in a full ``model.embed("pointcloud", ...)`` with a realistic
     anchor: open_clip ViT-B-32 at 224 px, random init (no weights needed; same FLOPs) (goal < 10%).

Timings on a shared CPU are noisy; compare the ratios, which are measured in the same run.
Run: ``python bench/projection.py [--clouds 32] [--threads 1] [--embed-clouds 4]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

import anybind
from anybind.modalities.pointcloud.projection import method_views, project_to_views


def unit_clouds(count: int, points: int, seed: int = 0) -> torch.Tensor:
    """``[count, points, 3]`` random clouds scaled into the unit sphere."""
    clouds = torch.randn(count, points, 3, generator=torch.Generator().manual_seed(seed)) * torch.tensor([1.0, 0.6, 0.3])
    return clouds / clouds.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True)


def best_seconds(work: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` timed runs of `work` (after one warm-up run)."""
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def per_view_loop(clouds: torch.Tensor, method: str, size: int | None) -> torch.Tensor:
    """The peer: one `project_to_views` call per cloud and per view, results stacked."""
    views = len(method_views(method).view_angles)
    return torch.stack([torch.cat([project_to_views(cloud, method, views=[v], size=size)[0] for v in range(views)])
                        for cloud in clouds])


def bench_projection(clouds: torch.Tensor, size: int | None, repeats: int) -> None:
    """Print clouds/s of the batched path and the per-view loop, per method."""
    count = clouds.shape[0]
    where = f"resized to {size} px" if size else "at grid resolution (no resize)"
    print(f"projection of {count} clouds x {clouds.shape[1]} points, {where}")
    for method in ("pointclip", "realistic"):
        views = len(method_views(method).view_angles)
        torch.testing.assert_close(project_to_views(clouds[:2], method, size=size), per_view_loop(clouds[:2], method, size))
        fast = best_seconds(lambda: project_to_views(clouds, method, size=size), repeats)
        loop = best_seconds(lambda: per_view_loop(clouds, method, size), max(1, repeats // 2))
        print(f"  {method:<10} {views:>2} views: batched {count / fast:8.1f} clouds/s | per-view loop "
              f"{count / loop:7.1f} clouds/s | ratio {loop / fast:5.1f}x")


def bench_embed_share(clouds: torch.Tensor, method: str, repeats: int) -> None:
    """Print the share of projection (render) time in a full embed through ViT-B-32 at 224 px."""
    spec = {"format": "anybind.model", "name": "bench-vit-b-32",
            "anchor": {"kind": "openclip", "model": "ViT-B-32", "seed": 0},
            "modalities": {"pointcloud": {"encoder": "projection", "encoder_args": {"method": method}}}}
    model = anybind.load(spec, device="cpu")
    encoder = model.encoder("pointcloud")
    size = model.anchor.image_preprocess.size
    with torch.inference_mode():
        batch = model.bound("pointcloud").modality.load(list(clouds))
        render = best_seconds(lambda: encoder.render(batch), repeats)
        load = best_seconds(lambda: model.bound("pointcloud").modality.load(list(clouds)), repeats)
    total = best_seconds(lambda: model.embed("pointcloud", clouds, batch_size=len(clouds)), repeats)
    print(f"full embed, ViT-B-32 random init at {size} px, {method}, {len(clouds)} clouds x "
          f"{encoder.num_views} views: {total / len(clouds) * 1000:.0f} ms/cloud; projection "
          f"{render / len(clouds) * 1000:.1f} ms/cloud = {100 * render / total:.1f}% of the embed "
          f"(loading/normalizing {100 * load / total:.1f}%)")


def main() -> None:
    """Parse arguments and run both benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clouds", type=int, default=32, help="clouds in the projection batch")
    parser.add_argument("--points", type=int, default=1024, help="points per cloud")
    parser.add_argument("--size", type=int, default=224, help="output image side (the anchor's input size)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the fastest is reported")
    parser.add_argument("--embed-clouds", type=int, default=4, help="clouds in the full-embed measurement (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    clouds = unit_clouds(args.clouds, args.points)
    with torch.inference_mode():
        bench_projection(clouds, None, args.repeats)
        bench_projection(clouds, args.size, args.repeats)
    if args.embed_clouds:
        for method in ("realistic", "pointclip"):
            bench_embed_share(clouds[:args.embed_clouds], method, max(1, args.repeats - 1))


if __name__ == "__main__":
    main()
