"""``anybind info``: registered modalities, encoders and anchors, and the presets shipped."""

from __future__ import annotations

import argparse
from typing import Any

from anybind.cli import add_common_options, print_json
from anybind.config import DATA_SUFFIXES, configs_dir
from anybind.registry import list_anchors, list_encoders


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``info``."""
    parser = subparsers.add_parser("info", help="list modalities, encoders, anchors and presets",
                                   description="List registered modalities (with encoders), anchors and presets.")
    add_common_options(parser, model=False)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the registry contents."""
    presets = sorted(p.stem for p in (configs_dir() / "presets").glob("*") if p.suffix in DATA_SUFFIXES)
    data = {"modalities": list_encoders(), "anchors": list_anchors(), "presets": presets}
    if args.json:
        print_json(data)
        return 0
    print("modalities (encoders):")
    for modality, encoders in data["modalities"].items():  # type: ignore[union-attr]
        print(f"  {modality:<12} {', '.join(encoders)}")
    print(f"anchors: {', '.join(data['anchors'])}")
    print(f"presets: {', '.join(presets)}")
    return 0
