"""``anybind index build|add|info``: make, grow and describe an on-disk index.

    anybind index build photos.index -i image photos/ -i text captions.txt --backend fast
    anybind index add photos.index -i audio sounds/ --glob '*.wav'
    anybind index info photos.index
"""

from __future__ import annotations

import argparse
from typing import Any

from anybind.cli import add_common_options, print_json
from anybind.cli.embed import add_input_options, check_batch_size, load_model, read_inputs
from anybind.errors import InputError


def _add_input_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", action="append", nargs="+", required=True, metavar=("MODALITY", "PATH"),
                        help="a modality then its files/folders (text: .txt files or texts); repeat per modality")
    add_input_options(parser)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``index`` and its ``build``, ``add``, ``info`` subcommands."""
    parser = subparsers.add_parser("index", help="build, grow or describe an index",
                                   description="Build, grow or describe an any-to-any retrieval index.")
    actions = parser.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="embed inputs into a new index (replaces one at PATH atomically)",
                               description="Embed inputs of one or more modalities into a new index folder.")
    build.add_argument("path", help="index folder to write")
    _add_input_argument(build)
    build.add_argument("--backend", default="exact", choices=("exact", "fast", "faiss"),
                       help="search backend saved with the index (default: %(default)s)")
    build.add_argument("--memory-budget", default=None, metavar="BYTES",
                       help="faiss backend: memory the faiss index may use, e.g. 4GB; picks HNSW, IVF or IVF-PQ")
    add_common_options(build)
    add = actions.add_parser("add", help="embed more inputs into an existing index",
                             description="Embed inputs and add them to an existing index (saved atomically).")
    add.add_argument("path", help="index folder")
    _add_input_argument(add)
    add_common_options(add)
    info = actions.add_parser("info", help="describe an index", description="Print an index's size, anchor, "
                              "backend, the search kernel path chosen for this CPU and rows per modality.")
    info.add_argument("path", help="index folder")
    add_common_options(info, model=False)
    return parser


def _inputs(args: argparse.Namespace) -> dict[str, list[Any]]:
    inputs: dict[str, list[Any]] = {}
    for group in args.input:
        modality, values = group[0], group[1:]
        if not values:
            raise InputError(f"`--input {modality}`: expected a modality followed by at least one path")
        inputs.setdefault(modality, []).extend(read_inputs(modality, values, args.glob, f"--input {modality}"))
    return inputs


def run(args: argparse.Namespace) -> int:
    """Dispatch to build / add / info."""
    from anybind.index import Index

    if args.index_command == "info":
        index = Index.load(args.path)
        summary: dict[str, Any] = {"path": args.path, **index.info()}
    else:
        batch_size = check_batch_size(args)
        model = load_model(args)
        inputs = _inputs(args)
        if args.index_command == "build":
            if args.memory_budget is not None and args.backend != "faiss":
                raise InputError(f"`--memory-budget` applies to `--backend faiss`, got `--backend {args.backend}`")
            options = {"memory_budget": args.memory_budget} if args.memory_budget is not None else {}
            index = Index.build(model, inputs, batch_size=batch_size, backend=args.backend, backend_options=options)
        else:
            index = Index.load(args.path)
            index.add_inputs(model, inputs, batch_size=batch_size)
        index.save(args.path)
        summary = {"path": args.path, **index.info()}
    if args.json:
        print_json(summary)
        return 0
    print(f"{args.path}: {summary['count']} vectors, dim {summary['dim']}, backend {summary['backend']}")
    print(f"  anchor: {summary['anchor']}")
    path = summary["search_path"]
    print(f"  search path: {path['kernel']} ({path['reason']}), {path['threads']} thread(s)")
    for modality, count in summary["modalities"].items():
        print(f"  {modality:<12} {count}")
    return 0
