"""The ``anybind`` command line.

Each subcommand lives in its own module ``anybind.cli.<name>`` exposing
``add_parser(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``. Modules are
listed in `COMMANDS`. Every subcommand gets ``--device``, ``--batch-size`` and ``--json`` from
`add_common_options`. An `AnybindError` ends the program with one clear line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from anybind.errors import AnybindError

COMMANDS = ("info", "train", "train_anchor", "convert_clap", "embed", "index", "search", "classify", "eval", "demo")


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
    for name in COMMANDS:
        module = importlib.import_module(f"anybind.cli.{name}")
        sub = module.add_parser(subparsers)
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
