"""``anybind convert-clap``: an official LAION-CLAP checkpoint -> an audio-only safetensors bundle."""

from __future__ import annotations

import argparse

from anybind.cli import add_common_options, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``anybind convert-clap``."""
    parser.add_argument("checkpoint", help="the CLAP .pt file")
    parser.add_argument("out_dir", help="folder to write clap-audio.safetensors and clap-audio.json into")
    add_common_options(parser, model=False)


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
