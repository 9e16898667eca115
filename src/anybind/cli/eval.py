"""``anybind eval DATASET ROOT``: a benchmark's published protocol on its published layout.

    anybind eval esc50 data/ESC-50-master --model my-bundle --compare
    anybind eval modelnet40 data/ModelNet40 --split test --tune-split train --json
    anybind eval imagefolder photos/ --modality image
"""

from __future__ import annotations

import argparse

from anybind.cli import add_common_options, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``anybind eval``."""
    from anybind.eval import list_datasets

    parser.add_argument("dataset", help=f"one of {', '.join(list_datasets())}")
    parser.add_argument("root", help="the dataset's top folder, as distributed")
    parser.add_argument("--split", "--fold", dest="split", default=None,
                        help="reported split or fold(s), comma-separated, or 'all' (default: the protocol's)")
    parser.add_argument("--variant", default=None, help="dataset variant (ScanObjectNN: OBJ_ONLY, OBJ_BG, PB_T50_RS)")
    parser.add_argument("--modality", default=None, help="modality of an imagefolder dataset")
    parser.add_argument("--templates", default=None, help="template-set name in configs/templates (default: protocol's)")
    parser.add_argument("--tune-split", default=None,
                        help="choose prompts (and point-cloud view weights) on this split; must not overlap --split")
    parser.add_argument("--compare", nargs="?", const=True, default=False, metavar="MODEL",
                        help="print the published number beside ours (optionally naming the published model)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    parser.add_argument("--output", default=None, help="also write the JSON report to this file")
    add_common_options(parser)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print a markdown table (or the JSON report with ``--json``)."""
    from anybind.atomic import atomic_write_json
    from anybind.cli.inputs import check_batch_size
    from anybind.eval import evaluate, to_markdown

    report = evaluate(args.dataset, args.root, args.model, split=args.split, variant=args.variant,
                      modality=args.modality, templates=args.templates, tune_split=args.tune_split,
                      batch_size=check_batch_size(args), compare=args.compare, resamples=args.resamples,
                      device=args.device)
    if args.output:
        atomic_write_json(args.output, report)
    if args.json:
        print_json(report)
    else:
        print(to_markdown(report), end="")
    return 0
