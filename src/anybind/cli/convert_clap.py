"""``anybind convert-clap``: an official LAION-CLAP checkpoint -> an audio-only safetensors bundle."""

from __future__ import annotations

import argparse
from typing import Any

from anybind.cli import add_common_options, print_json


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``convert-clap``."""
    parser = subparsers.add_parser(
        "convert-clap", help="convert a LAION-CLAP checkpoint to an audio-only safetensors bundle",
        description="Read an official LAION-CLAP checkpoint (630k-best.pt, 630k-audioset-best.pt, "
                    "*-fusion-best.pt, music_*.pt) with weights_only=True, keep its audio branch and CLAP "
                    "projection, detect the HTSAT size and fusion type, and write clap-audio.safetensors "
                    "plus clap-audio.json (the modalities.audio entry that uses it) into OUT_DIR.")
    parser.add_argument("checkpoint", help="the CLAP .pt file")
    parser.add_argument("out_dir", help="folder to write clap-audio.safetensors and clap-audio.json into")
    add_common_options(parser, model=False)
    return parser


def run(args: argparse.Namespace) -> int:
    """Convert and print what was written."""
    from anybind.modalities.audio.clap_checkpoint import CONVERTED_WEIGHTS, convert_clap_checkpoint

    info = convert_clap_checkpoint(args.checkpoint, args.out_dir)
    if args.json:
        print_json(info)
        return 0
    layout = info["layout"]
    print(f"converted {info['source']}: HTSAT-{layout['size']}, fusion {layout['fusion'] or 'none'}, "
          f"{info['tensors']} audio tensors -> {args.out_dir}/{CONVERTED_WEIGHTS}")
    print(f"use it with modalities.audio = {info['modality_entry']}")
    return 0
