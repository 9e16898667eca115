"""``anybind search INDEX QUERY...``: search an index with texts or files of any modality.

    anybind search photos.index "a dog on a beach" -k 5
    anybind search photos.index bark.wav --query-modality audio --modality image --json
"""

from __future__ import annotations

import argparse

from anybind.cli import add_common_options, print_json
from anybind.cli.inputs import add_input_options, check_batch_size, load_model_for_index, read_inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``anybind search``."""
    parser.add_argument("index", help="index folder (from `anybind index build` or `anybind embed`)")
    parser.add_argument("queries", nargs="*", help="query texts (literal; @FILE or --text-file FILE reads one per "
                        "line), or files/folders with --query-modality")
    parser.add_argument("--query-modality", default="text", help="modality of the queries (default: %(default)s)")
    parser.add_argument("-k", "--top-k", type=int, default=10, help="hits per query (default: %(default)s)")
    parser.add_argument("--modality", action="append", default=None,
                        help="only return rows of this modality (repeatable; default: all)")
    parser.add_argument("--backend", default=None, choices=("exact", "fast", "faiss"),
                        help="search backend (default: the one saved with the index)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the sha256 check of the index files (faster for large indexes)")
    add_input_options(parser)
    add_common_options(parser, model_from_index=True)


def run(args: argparse.Namespace) -> int:
    """Embed the queries, search, print a table or JSON."""
    from anybind.index import Index

    batch_size = check_batch_size(args)
    index = Index.load(args.index, verify=not args.no_verify)
    model = load_model_for_index(args, index, args.index)
    queries = read_inputs(args.query_modality, args.queries, args.glob, "queries", args.text_file)
    vectors = model.embed(args.query_modality, queries, batch_size=batch_size)
    result = index.search(vectors, k=args.top_k, modality=args.modality, backend=args.backend)
    hits = result.to_list()
    if args.json:
        print_json([{"query": str(query), "hits": query_hits} for query, query_hits in zip(queries, hits)])
        return 0
    for query, query_hits in zip(queries, hits):
        print(f"query: {query}")
        print(f"  {'rank':>4}  {'score':>7}  {'modality':<10}  {'id':<8}  source")
        for rank, hit in enumerate(query_hits, 1):
            print(f"  {rank:>4}  {hit['score']:>7.4f}  {hit['modality']:<10}  {str(hit['id']):<8}  {hit.get('source', '')}")
    return 0
