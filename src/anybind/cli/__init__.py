"""The ``anybind`` command line.

Each subcommand lives in its own module ``anybind.cli.<name>`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; its name, one-line help and description are a
row of `COMMANDS`. Every subcommand gets ``--device``, ``--batch-size`` and ``--json`` from
`add_common_options`. An `AnybindError` ends the program with one clear line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from anybind.errors import AnybindError


@dataclass(frozen=True)
class Command:
    """One ``anybind`` subcommand: module ``anybind.cli.<module>`` defines ``add_arguments(parser)`` and
    ``run(args) -> int``; `build_parser` adds it as ``module`` with "-" for "_" (``train_anchor`` ->
    ``train-anchor``)."""

    module: str  # module name under anybind.cli
    help: str  # one line in ``anybind --help``'s command list
    description: str = ""  # the top of ``anybind NAME --help``

    @property
    def name(self) -> str:
        """What users type."""
        return self.module.replace("_", "-")


COMMANDS = (  # in the order `anybind --help` lists them
    Command(
        "info", help="list modalities, encoders, anchors and presets",
        description="List registered modalities (with encoders), anchors and presets."),
    Command(
        "train", help="bind a modality to the frozen anchor from a recipe",
        description="Train a modality's encoder against the frozen anchor on a paired manifest, as the recipe "
                    "(YAML) says; writes checkpoints, metrics and a bundle folder `anybind.load` reads."),
    Command(
        "train_anchor", help="train an image tower against a frozen text encoder (LiT) to make an anchor",
        description="Train a `lit` anchor: a small image tower fitted to a frozen pretrained sentence encoder "
                    "(all-MiniLM-L6-v2) on an image-caption manifest (columns input,caption[,split]); writes "
                    "checkpoints, metrics.csv and a bundle folder that `anybind train` can bind modalities to."),
    Command(
        "convert_clap", help="convert a LAION-CLAP checkpoint to an audio-only safetensors bundle",
        description="Read an official LAION-CLAP checkpoint (630k-best.pt, 630k-audioset-best.pt, "
                    "*-fusion-best.pt, music_*.pt) with weights_only=True, keep its audio branch and CLAP "
                    "projection, detect the HTSAT size and fusion type, and write clap-audio.safetensors "
                    "plus clap-audio.json (the modalities.audio entry that uses it) into OUT_DIR."),
    Command(
        "embed", help="embed files or folders into vector shards + metadata",
        description="Embed inputs of one modality into an output folder of .npy vector shards, metadata.jsonl "
                    "and manifest.json (the index format: load it with anybind.Index.load). For `text`, "
                    "each argument is the text itself; --text-file FILE or @FILE gives one text per line of FILE."),
    Command(
        "index", help="build, grow or describe an index",
        description="Build, grow or describe an any-to-any retrieval index."),
    Command(
        "search", help="search an index with a text or a file of any modality",
        description="Embed each query (texts by default; files with --query-modality) and print the index's "
                    "top hits by cosine similarity."),
    Command(
        "classify", help="zero-shot classify files over class names or a shipped class list",
        description="Zero-shot classification: class names -> prompt templates -> anchor text vectors, "
                    "softmax of cosine similarity with each input's vector."),
    Command(
        "eval", help="evaluate a model on a benchmark laid out as published (zero-shot / retrieval)",
        description="Run a benchmark's published protocol: metrics with bootstrap 95%% intervals and the protocol "
                    "used; nothing is tuned on the reported split."),
    Command(
        "demo", help="train (first run) and evaluate the offline default bundle; write an HTML report",
        description="Builds the default bundle on first use (a procedural world, a LiT anchor against frozen "
                    "all-MiniLM-L6-v2, audio/point clouds/depth bound to images only), then prints emergent "
                    "zero-shot and retrieval numbers beside chance and an untrained ablation."),
)


def add_common_options(parser: argparse.ArgumentParser, *, model: bool = True, model_from_index: bool = False) -> None:
    """Add ``--device``, ``--batch-size``, ``--json`` (and ``--model`` when `model`) to `parser`.

    With `model_from_index`, ``--model`` defaults to the model recorded in the index the command reads.
    """
    if model_from_index:
        parser.add_argument("--model", default=None,
                            help="preset name, config file or bundle folder (default: the model that built the index)")
    elif model:
        parser.add_argument("--model", default="tiny",
                            help="preset name, config file or bundle folder (default: %(default)s)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, default=None, help="inputs per batch (default: per modality)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")


def print_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout."""
    print(json.dumps(data, indent=2, default=str))


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand of `COMMANDS`."""
    parser = argparse.ArgumentParser(prog="anybind", description="Bind every modality to one frozen anchor space.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        module = importlib.import_module(f"anybind.cli.{command.module}")
        sub = subparsers.add_parser(command.name, help=command.help, description=command.description)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anybind`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except AnybindError as error:
        print(f"anybind {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"anybind {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
