"""Training steps/s of `anybind train` with the cached frozen anchor vs recomputing the anchor each step.

Both runs bind the built-in audio ``cnn`` encoder (``cnn-small``, 2 s clips at 16 kHz, log-mel
input) to a ViT-B-32 anchor (random init, built offline: the architecture and cost are those of
the real ViT-B-32) on audio<->image pairs generated here. The cached run looks partner vectors
up in the on-disk store built once at start; the other recomputes the image tower on every step
(``data.cache_anchor: false``). Everything else — data loading, encoder, loss, optimizer — is
the same, measured in one process. Goal: ratio >= 3x.

    python bench/bind_step.py [--rows 96] [--batch-size 32] [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ANCHOR_CONFIG = {"format": "anybind.model", "version": 1, "name": "vit-b-32-random",
                 "anchor": {"kind": "openclip", "model": "ViT-B-32", "seed": 0}, "modalities": {}}


def write_pairs(folder: Path, rows: int, seed: int = 0) -> Path:
    """`rows` 2 s noise-and-tone wav clips paired with 224x224 noise PNGs; returns the manifest."""
    import soundfile
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    lines = ["input,image"]
    t = np.arange(32000) / 16000
    for index in range(rows):
        clip = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.normal(size=t.size)
        soundfile.write(folder / "audio" / f"a{index:04d}.wav", clip.astype(np.float32), 16000)
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(folder / "images" / f"i{index:04d}.png")
        lines.append(f"audio/a{index:04d}.wav,images/i{index:04d}.png")
    manifest = folder / "pairs.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def main() -> None:
    """Run both variants and print steps/s and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per variant")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import anybind
    from anybind.train import bind

    work = Path(tempfile.mkdtemp(prefix="anybind-bench-bind-"))
    manifest = write_pairs(work / "data", args.rows)
    model_file = work / "vit-b-32.yaml"
    model_file.write_text(yaml.safe_dump(ANCHOR_CONFIG))
    started = time.perf_counter()
    model = anybind.load(model_file, device="cpu")
    print(f"anchor: {model.anchor_key} ({sum(p.numel() for p in model.anchor.parameters()) / 1e6:.0f}M params, "
          f"built in {time.perf_counter() - started:.1f}s)")

    def recipe(name: str, cache_anchor: bool) -> dict:
        return {"modality": "audio", "encoder": "cnn", "encoder_args": {"architecture": "cnn-small"},
                "preprocess": "cnn-16k", "model": str(model_file), "output_dir": str(work / name),
                "data": {"manifest": str(manifest), "val_fraction": 0.0, "cache_anchor": cache_anchor,
                         "anchor_cache_dir": str(work / "anchor-cache")},
                "train": {"batch_size": args.batch_size, "steps": args.steps, "lr": 1e-3, "device": "cpu",
                          "num_threads": args.threads},
                "eval": {"every_steps": 0}, "checkpoint": {"every_steps": 0, "keep_last": 1},
                "log": {"every_steps": args.steps, "tensorboard": False, "progress": False}}

    started = time.perf_counter()
    cached = bind(recipe("cached", True), base_model=model)
    total = time.perf_counter() - started
    recomputed = bind(recipe("recomputed", False), base_model=model)
    # The median step time drops the first step's one-off warm-up (allocations, kernel selection).
    cached_rate, recomputed_rate = 1 / statistics.median(cached.step_seconds), 1 / statistics.median(
        recomputed.step_seconds)
    print(f"cached anchor:     {cached_rate:.3f} steps/s (median step)  "
          f"[whole run incl. the one-time vector cache of {args.rows} images: {total:.1f}s]")
    print(f"recomputed anchor: {recomputed_rate:.3f} steps/s (median step)")
    print(f"ratio cached/recomputed: {cached_rate / recomputed_rate:.1f}x (goal >= 3x); mean-based "
          f"{cached.steps_per_second / recomputed.steps_per_second:.1f}x; batch {args.batch_size}, "
          f"{args.steps} steps each, {args.threads} threads")


if __name__ == "__main__":
    main()
