"""``anybind index build|add|info|merge|export``: make, grow, describe, assemble and export an on-disk index.

    anybind index build photos.index -i image photos/ -i text captions.txt --backend fast
    torchrun --nproc-per-node 4 -m anybind.cli index build big.index -i image photos/ --backend faiss --memory-budget 2GB
    anybind index merge big.index.parts big.index          # assemble parts written with --no-merge
    anybind index add photos.index -i audio sounds/ --glob '*.wav'
    anybind index info photos.index
    anybind index export photos.index --parquet meta.parquet --lancedb ./lance --table photos
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from anybind.cli import add_common_options, print_json
from anybind.cli.inputs import add_input_options, check_batch_size, load_model_for_index, read_inputs
from anybind.cli.sharded import add_scale_options, embed_into_index
from anybind.errors import InputError


def _add_input_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", action="append", nargs="+", required=True, metavar=("MODALITY", "PATH"),
                        help="a modality then its files/folders (text: literal texts, or @FILE); repeat per modality")
    add_input_options(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The actions of ``anybind index`` (``build``, ``add``, ``info``, ``merge``, ``export``) and their arguments."""
    actions = parser.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="embed inputs into a new index (replaces one at PATH atomically)",
                               description="Embed inputs of one or more modalities into a new index folder.")
    build.add_argument("path", help="index folder to write")
    _add_input_argument(build)
    build.add_argument("--backend", default="exact", choices=("exact", "fast", "faiss"),
                       help="search backend saved with the index (default: %(default)s)")
    build.add_argument("--memory-budget", default=None, metavar="BYTES",
                       help="faiss backend: peak memory of the build, e.g. 4GB; picks HNSW, IVF or IVF-PQ")
    add_scale_options(build)
    add_common_options(build)
    add = actions.add_parser("add", help="embed more inputs into an existing index",
                             description="Embed inputs and add them to an existing index (saved atomically).")
    add.add_argument("path", help="index folder")
    _add_input_argument(add)
    add_common_options(add, model_from_index=True)
    info = actions.add_parser("info", help="describe an index", description="Print an index's size, anchor, "
                              "backend, the search kernel path chosen for this CPU and rows per modality.")
    info.add_argument("path", help="index folder")
    add_common_options(info, model=False)
    merge = actions.add_parser("merge", help="assemble the parts of a (torchrun) embedding run into one index",
                               description="Merge every part in PARTS (written by `embed`/`index build` with "
                               "--no-merge, by any number of processes) into the index folder PATH.")
    merge.add_argument("parts", help="parts folder")
    merge.add_argument("path", help="index folder to write")
    merge.add_argument("--backend", default="exact", choices=("exact", "fast", "faiss"),
                       help="search backend saved with the index (default: %(default)s)")
    merge.add_argument("--memory-budget", default=None, metavar="BYTES", help="faiss backend: peak memory of the build")
    merge.add_argument("--parquet", default=None, metavar="FILE", help="also write the metadata as Parquet")
    merge.add_argument("--keep-parts", action="store_true", help="keep the parts folder after merging")
    add_common_options(merge, model=False)
    export = actions.add_parser("export", help="export an index to Parquet metadata and/or a LanceDB table",
                                description="Write the row metadata as Parquet (row order = vector order) and/or "
                                "the vectors with their metadata into a LanceDB table.")
    export.add_argument("path", help="index folder")
    export.add_argument("--parquet", default=None, metavar="FILE", help="Parquet file to write")
    export.add_argument("--lancedb", default=None, metavar="DIR", help="LanceDB database folder (created if needed)")
    export.add_argument("--table", default="anybind", help="LanceDB table name (default: %(default)s; replaced)")
    add_common_options(export, model=False)


def _inputs(args: argparse.Namespace) -> dict[str, list[Any]]:
    inputs: dict[str, list[Any]] = {}
    for group in args.input:
        modality, values = group[0], group[1:]
        if not values:
            raise InputError(f"`--input {modality}`: expected a modality followed by at least one path")
        inputs.setdefault(modality, []).extend(read_inputs(modality, values, args.glob, f"--input {modality}"))
    if args.text_file:
        inputs.setdefault("text", []).extend(read_inputs("text", [], args.glob, "--text-file", args.text_file))
    return inputs


def _faiss_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.memory_budget is not None and args.backend != "faiss":
        raise InputError(f"`--memory-budget` applies to `--backend faiss`, got `--backend {args.backend}`")
    return {"memory_budget": args.memory_budget} if args.memory_budget is not None else {}


def run(args: argparse.Namespace) -> int:
    """Dispatch to build / add / info / merge / export."""
    from anybind.index import Index

    if args.index_command == "info":
        index = Index.load(args.path)
        summary: dict[str, Any] = {"path": args.path, **index.info()}
    elif args.index_command == "export":
        return _export(args)
    elif args.index_command == "merge":
        from anybind.cli.sharded import _merge

        options = _faiss_options(args)
        summary = {"path": args.path, **_merge(Path(args.parts), args.path, args.backend, options, args)}
    elif args.index_command == "build":
        check_batch_size(args)
        options = _faiss_options(args)
        built = embed_into_index(args, _inputs(args), args.path, backend=args.backend, backend_options=options)
        if built is None:
            return 0
        summary = {"path": args.path, **built}
    else:
        batch_size = check_batch_size(args)
        index = Index.load(args.path)  # add
        model = load_model_for_index(args, index, args.path)
        inputs = _inputs(args)
        index.add_inputs(model, inputs, batch_size=batch_size)
        index.save(args.path)
        summary = {"path": args.path, **index.info()}
    if args.json:
        print_json(summary)
        return 0
    print(f"{args.path}: {summary['count']} vectors, dim {summary['dim']}, backend {summary['backend']}")
    print(f"  anchor: {summary['anchor']}")
    if summary.get("model"):
        print(f"  model:  {summary['model']}")
    path = summary["search_path"]
    print(f"  search path: {path['kernel']} ({path['reason']}), {path['threads']} thread(s)")
    for modality, count in summary["modalities"].items():
        print(f"  {modality:<12} {count}")
    if "faiss" in summary:
        facts = summary["faiss"]
        print(f"  faiss: {facts['factory']}, {facts['bytes']} bytes on disk, recall@10 vs exact "
              f"{facts['recall_at_10']} on {facts['recall_queries']} sampled queries")
    return 0


def _export(args: argparse.Namespace) -> int:
    from anybind.index.export import export_lancedb, export_parquet

    if not args.parquet and not args.lancedb:
        raise InputError("`index export`: expected --parquet FILE and/or --lancedb DIR, got neither")
    done: dict[str, Any] = {"path": args.path}
    if args.parquet:
        done["parquet"] = {"file": args.parquet, "rows": export_parquet(args.path, args.parquet)}
    if args.lancedb:
        done["lancedb"] = {"uri": args.lancedb, "table": args.table,
                           "rows": export_lancedb(args.path, args.lancedb, args.table)}
    if args.json:
        print_json(done)
    else:
        for kind in ("parquet", "lancedb"):
            if kind in done:
                print(f"{args.path} -> {kind}: {done[kind]}")
    return 0
