"""Options shared by the training commands (``train``, ``train-anchor``): resume/overwrite, data and
output overrides, and how they are applied to a recipe dataclass with `train`, `data` and `output_dir`."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path
from typing import Any, TypeVar

from anybind.cli import add_common_options
from anybind.errors import InputError

R = TypeVar("R")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--resume``, ``--overwrite``, the data/output/steps overrides, ``--stop-after``,
    ``--no-progress`` and the common options to a training command's `parser`."""
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


def apply_run_overrides(recipe: R, args: argparse.Namespace) -> R:
    """`recipe` with ``--device``, ``--batch-size``, ``--steps`` (clearing `train.epochs`),
    ``--manifest``, ``--val-manifest`` and ``--output-dir`` applied; paths resolved from the working folder."""
    train: Any = recipe.train  # type: ignore[attr-defined]
    for option, value in (("--steps", args.steps), ("--batch-size", args.batch_size),
                          ("--stop-after", getattr(args, "stop_after", None))):
        if value is not None and value < 1:
            raise InputError(f"`{option}`: expected a positive integer, got {value}")
    changes: dict[str, Any] = {}
    if args.device is not None:
        changes["device"] = args.device
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.steps is not None:
        changes["steps"] = args.steps
        if "epochs" in {f.name for f in dataclasses.fields(train)}:
            changes["epochs"] = None
    data: Any = recipe.data  # type: ignore[attr-defined]
    data_changes = {name: str(Path(value).resolve()) for name, value in
                    (("manifest", args.manifest), ("val_manifest", args.val_manifest)) if value is not None}
    recipe = dataclasses.replace(recipe, train=dataclasses.replace(train, **changes),  # type: ignore[type-var]
                                 data=dataclasses.replace(data, **data_changes))
    if args.output_dir is not None:
        recipe = dataclasses.replace(recipe, output_dir=str(Path(args.output_dir).resolve()))  # type: ignore[type-var]
    return recipe


def resume_command(args: argparse.Namespace) -> str:
    """The command line that continues a stopped run: the recipe and every override given to this
    call (they are part of the run's math), plus ``--resume`` (without ``--overwrite``/``--stop-after``)."""
    parts = ["anybind", args.command, args.config]
    for option in ("model", "manifest", "val_manifest", "output_dir", "steps", "batch_size", "device"):
        value = getattr(args, option, None)
        if value is not None:
            parts += [f"--{option.replace('_', '-')}", str(value)]
    return shlex.join([*parts, "--resume"])
