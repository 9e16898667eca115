"""Benchmark: procedural world generation, and LiT training of the ``lit`` anchor on it.

1. Generation of N objects (all five modalities in memory) in one process vs ``workers=2``;
   writing the files and manifests.
2. LiT training of the ``cnn64`` image tower against frozen all-MiniLM-L6-v2 on the train
   split, then on the val split: text->image R@1/R@5 and zero-shot shape/material/colour/size
   accuracy, each beside the untrained (random-init) tower measured in the same run, and chance.

    python bench/world_lit.py [--objects 2000] [--epochs 10] [--threads 2] [--skip-write]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from anybind.train.lit import lit_anchor, train_lit
    from anybind.train.lit_config import LiTTrainConfig
    from anybind.train.lit_data import embed_texts, encode_images, evaluate_lit, image_pixels
    from anybind.demo.world import class_prompts, generate_world

    generate_world(4, seed=0)  # warm the mesh and config caches
    start = time.perf_counter()
    world = generate_world(args.objects, seed=0)
    one = time.perf_counter() - start
    start = time.perf_counter()
    generate_world(args.objects, seed=0, workers=2)
    two = time.perf_counter() - start
    print(f"generate {args.objects} objects: 1 process {one:.1f} s ({1000 * one / args.objects:.1f} ms/object), "
          f"2 workers {two:.1f} s; ratio 1-process/2-workers {one / two:.2f}")
    if not args.skip_write:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            world.write(folder)
            print(f"write files + manifests: {time.perf_counter() - start:.1f} s")

    train, val = world.subset("train"), world.subset("val")
    kinds = ("shape", "material", "colour", "size")
    labels = {k: val.labels(k) for k in kinds}
    prompts = {k: class_prompts(k, world.config) for k in kinds}
    config = LiTTrainConfig(epochs=args.epochs)
    start = time.perf_counter()
    result = train_lit(train.images, train.captions, config, val_images=val.images, val_captions=val.captions,
                       val_labels=labels, class_prompts=prompts, text_cache=False)
    total = time.perf_counter() - start
    steps = result.history[-1]["step"]
    print(f"LiT: {len(train)} train images, {steps} steps in {result.seconds:.1f} s "
          f"({steps / result.seconds:.2f} steps/s); with caption embedding and setup {total:.1f} s")

    anchor = lit_anchor(config)  # same seed: the untrained tower the training started from
    class_vectors = {k: (list(p), embed_texts(anchor, list(p.values()))) for k, p in prompts.items()}
    untrained = evaluate_lit(encode_images(anchor.tower, image_pixels(torch.as_tensor(val.images), anchor)),
                             embed_texts(anchor, [c[0] for c in val.captions]), labels, class_vectors)
    print(f"{'val metric':<32}{'trained':>9}{'untrained':>11}{'chance':>8}")
    for name in ("text_to_image_r1", "text_to_image_r5", "text_to_image_r1_same_labels",
                 *(f"zero_shot_{k}" for k in kinds)):
        chance = result.metrics.get(f"{name}_chance", result.metrics["chance_r1"] if "r1" in name else float("nan"))
        print(f"{name:<32}{result.metrics[name]:>9.3f}{untrained[name]:>11.3f}{chance:>8.3f}")
    print(json.dumps({"history": result.history[-3:]}, indent=1))


if __name__ == "__main__":
    main()
