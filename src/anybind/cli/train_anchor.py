"""``anybind train-anchor RECIPE.yaml``: build an anchor for a domain without a CLIP.

Trains a small image tower against a frozen pretrained text encoder (LiT) on an image-caption
manifest; the result bundle is an anchor that ``anybind train`` can bind other modalities to.
See `anybind.anchors.lit_training.train_anchor`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from anybind.cli import add_common_options, print_json


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``train-anchor``."""
    parser = subparsers.add_parser(
        "train-anchor", help="train an image tower against a frozen text encoder (LiT) to make an anchor",
        description="Train a `lit` anchor: a small image tower fitted to a frozen pretrained sentence encoder "
                    "(all-MiniLM-L6-v2) on an image-caption manifest (columns input,caption[,split]); writes "
                    "checkpoints, metrics.csv and a bundle folder that `anybind train` can bind modalities to.")
    parser.add_argument("config", help="recipe file (YAML/JSON): output_dir, data.manifest, train.{tower,epochs,...}")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the output folder from its newest checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in the output folder")
    parser.add_argument("--manifest", default=None, help="override `data.manifest` (relative to the working folder)")
    parser.add_argument("--val-manifest", default=None, help="override `data.val_manifest`")
    parser.add_argument("--output-dir", default=None, help="override the recipe's `output_dir`")
    parser.add_argument("--steps", type=int, default=None, help="override `train.steps`")
    parser.add_argument("--stop-after", type=int, default=None, metavar="N",
                        help="stop after N steps in this call (checkpoint kept, resume later)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_common_options(parser, model=False)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the recipe, apply command-line overrides, and train."""
    from anybind.anchors.lit_training import load_lit_recipe, train_anchor

    recipe = load_lit_recipe(args.config)
    train = recipe.train
    if args.device is not None:
        train = dataclasses.replace(train, device=args.device)
    if args.batch_size is not None:
        train = dataclasses.replace(train, batch_size=args.batch_size)
    if args.steps is not None:
        train = dataclasses.replace(train, steps=args.steps)
    data = recipe.data
    if args.manifest is not None:
        data = dataclasses.replace(data, manifest=str(Path(args.manifest).resolve()))
    if args.val_manifest is not None:
        data = dataclasses.replace(data, val_manifest=str(Path(args.val_manifest).resolve()))
    recipe = dataclasses.replace(recipe, train=train, data=data)
    if args.output_dir is not None:
        recipe = dataclasses.replace(recipe, output_dir=str(Path(args.output_dir).resolve()))
    if args.no_progress or args.json:
        recipe = dataclasses.replace(recipe, progress=False)
    result = train_anchor(recipe, resume=args.resume, overwrite=args.overwrite, stop_after=args.stop_after)
    if args.json:
        print_json(result.to_dict())
        return 0
    print(f"steps: {result.steps}/{result.total_steps}" +
          (f" (resumed at {result.resumed_from})" if result.resumed_from else ""))
    for name, value in sorted(result.metrics.items()):
        print(f"  val {name}: {value:.4f}")
    print(f"bundle: {result.bundle_dir}" if result.bundle_dir
          else f"stopped; resume with: anybind train-anchor {args.config} --resume")
    return 0
