"""``anybind embed MODALITY PATH...``: embed files or folders into vector shards + metadata.

The output folder has the index format (``manifest.json``, ``.npy`` vector shards,
``metadata.jsonl``; see `anybind.index.storage`), so it loads with ``anybind.Index.load`` or
``numpy.load`` and can be searched directly. Under ``torchrun`` each process embeds its share
(`anybind.cli.sharded`).
"""

from __future__ import annotations

import argparse

from anybind.cli import add_common_options, print_json
from anybind.cli.inputs import add_input_options, check_batch_size, read_inputs
from anybind.cli.sharded import add_scale_options, embed_into_index


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``anybind embed``."""
    parser.add_argument("modality", help="modality of the inputs, e.g. image, audio, text")
    parser.add_argument("inputs", nargs="+", help="files or folders (text: .txt files or literal texts)")
    parser.add_argument("--out", required=True, help="output folder (created, or replaced atomically)")
    add_input_options(parser)
    add_scale_options(parser)
    add_common_options(parser)


def run(args: argparse.Namespace) -> int:
    """Embed (this process's share under torchrun) and write the output folder."""
    check_batch_size(args)
    inputs = read_inputs(args.modality, args.inputs, args.glob, "inputs", args.text_file)
    info = embed_into_index(args, {args.modality: inputs}, args.out)
    if info is None:
        return 0
    summary = {"out": str(args.out), "modality": args.modality, "count": info["count"], "dim": info["dim"],
               "anchor": info["anchor"]}
    if args.json:
        print_json(summary)
    else:
        print(f"embedded {info['count']} {args.modality} input(s) -> {args.out} (dim {info['dim']}, "
              f"anchor {info['anchor']})")
    return 0
