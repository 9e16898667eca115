"""``anybind train-anchor RECIPE.yaml``: build an anchor for a domain without a CLIP.

Trains a small image tower against a frozen pretrained text encoder (LiT) on an image-caption
manifest; the result bundle is an anchor that ``anybind train`` can bind other modalities to.
See `anybind.train.lit.train_anchor`.
"""

from __future__ import annotations

import argparse
import dataclasses

from anybind.cli import print_json
from anybind.cli.run_options import add_run_options, apply_run_overrides, resume_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``anybind train-anchor``."""
    parser.add_argument("config", help="recipe file (YAML/JSON): output_dir, data.manifest, train.{tower,epochs,...}")
    add_run_options(parser)


def run(args: argparse.Namespace) -> int:
    """Load the recipe, apply command-line overrides, and train."""
    from anybind.train.lit import train_anchor
    from anybind.train.lit_config import load_lit_recipe

    recipe = apply_run_overrides(load_lit_recipe(args.config), args)
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
          else f"stopped; resume with: {resume_command(args)}")
    return 0
