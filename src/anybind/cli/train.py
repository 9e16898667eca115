"""``anybind train RECIPE.yaml``: bind a modality to the frozen anchor (see `anybind.train.bind`).

Runs under ``torchrun --nproc_per_node N -m anybind.cli train RECIPE.yaml`` for DDP.
"""

from __future__ import annotations

import argparse
import dataclasses

from anybind.cli import print_json
from anybind.cli.run_options import add_run_options, apply_run_overrides, resume_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``anybind train``."""
    parser.add_argument("config", help="recipe file (YAML/JSON), e.g. configs/recipes/audio-cnn.yaml")
    parser.add_argument("--model", default=None,
                        help="override the recipe's base `model` (preset name, model config or bundle folder)")
    add_run_options(parser)


def run(args: argparse.Namespace) -> int:
    """Load the recipe, apply command-line overrides, and bind."""
    from pathlib import Path

    from anybind.train import bind, load_bind_config

    config = apply_run_overrides(load_bind_config(args.config), args)
    if args.model is not None:
        model = Path(args.model)
        config = dataclasses.replace(config, model=str(model.resolve()) if model.exists() else args.model)
    if args.no_progress or args.json:
        config = dataclasses.replace(config, log=dataclasses.replace(config.log, progress=False))
    result = bind(config, resume=args.resume, overwrite=args.overwrite, stop_after=args.stop_after)
    if result.rank != 0:  # under torchrun only rank 0 reports
        return 0
    if args.json:
        print_json(result.to_dict())
        return 0
    print(f"steps: {result.step}/{result.total_steps}  loss: {result.train_loss:.4f}  "
          f"logit scale: {result.logit_scale:.2f}  ({result.steps_per_second:.2f} steps/s)")
    for name, value in sorted(result.metrics.items()):
        print(f"  {name}: {value:.4f}")
    if result.skipped_rows:
        print(f"skipped rows: {result.skipped_rows}")
    print(f"bundle: {result.bundle_dir}" if result.bundle_dir else
          f"stopped at step {result.step}; resume with: {resume_command(args)}")
    return 0
