"""Benchmark: real pretrained parts offline (``anybind.load("real")``) on real material, no training.

1. The demo's real section (configs/demo-real/default.yaml): text->photo R@1, ImageNet zero-shot top-1/top-5
   of scikit-image/scikit-learn photos, text->sound R@1/R@5 on freedesktop event sounds, each beside
   chance; with a fresh ``$ANYBIND_HOME`` (``--cold``) the time includes embedding the 1521 label texts.
2. Speed of the EfficientNet-Lite0 image tower: timm's ``tf_efficientnet_lite0`` (what anybind runs)
   vs the reference package ``efficientnet-lite-pytorch`` on the same weights, images/s and ratio.

    python bench/real_material.py [--threads 2] [--cold] [--batch 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from machine import describe_machine  # bench/machine.py


def images_per_second(forward: object, pixels: torch.Tensor, repeats: int = 3) -> float:
    """Best-of-`repeats` throughput of `forward(pixels)`."""
    best = float("inf")
    with torch.inference_mode():
        forward(pixels[:2])  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            forward(pixels)
            best = min(best, time.perf_counter() - start)
    return len(pixels) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="use a fresh $ANYBIND_HOME (no cached label vectors)")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.cold:
        os.environ["ANYBIND_HOME"] = tempfile.mkdtemp(prefix="anybind-bench-")
    print(f"CPU: {describe_machine()}; threads {args.threads}; load average {os.getloadavg()[0]:.1f} at start")

    from anybind.demo.real import evaluate_real, real_table

    start, start_cpu = time.perf_counter(), time.process_time()
    result = evaluate_real()
    print(real_table(result))
    print(f"real section: {time.perf_counter() - start:.1f} s wall, {time.process_time() - start_cpu:.1f} s CPU "
          f"(all threads) including imports and loading the model ({'cold' if args.cold else 'warm'} label-vector cache)")

    from efficientnet_lite_pytorch import EfficientNet

    from anybind.anchors.image_classifier import FrozenImageClassifier, load_classifier_config

    ours = FrozenImageClassifier(load_classifier_config("efficientnet-lite0"))
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(ours.weights_file)).eval()
    pixels = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    timm_speed = images_per_second(ours.features, pixels)
    reference_speed = images_per_second(lambda x: reference._avg_pooling(reference.extract_features(x)), pixels)
    print(f"EfficientNet-Lite0 pooled features, batch {args.batch} at 224 px: timm {timm_speed:.1f} img/s, "
          f"efficientnet-lite-pytorch {reference_speed:.1f} img/s, ratio {timm_speed / reference_speed:.2f}")
    print(f"load average {os.getloadavg()[0]:.1f} at end (the machine may be shared: compare ratios, not times)")


if __name__ == "__main__":
    main()
