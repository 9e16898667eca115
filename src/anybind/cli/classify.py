"""``anybind classify MODALITY PATH... --classes NAMES``: zero-shot classification of files.

    anybind classify audio clips/ --classes esc50 --top 3
    anybind classify image photo.jpg --classes "dog,cat,car" --json
"""

from __future__ import annotations

import argparse

from anybind.cli import add_common_options, print_json
from anybind.cli.inputs import add_input_options, check_batch_size, load_model, read_inputs
from anybind.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``anybind classify``."""
    parser.add_argument("modality", help="modality of the inputs, e.g. audio, image, pointcloud, depth")
    parser.add_argument("inputs", nargs="*", help="files or folders (text: literal texts, or @FILE)")
    parser.add_argument("--classes", required=True,
                        help="comma-separated class names, or a class-list name from configs/classes "
                             "(esc50, modelnet40, nyu-depth-v2-scenes)")
    templates = parser.add_mutually_exclusive_group()
    templates.add_argument("--templates", default=None, metavar="SET_OR_FILE",
                           help="template-set name in configs/templates, or a .yaml/.json file with a `templates:` "
                                "list, or a .txt file with one template per line (default: the modality's set)")
    templates.add_argument("--template", action="append", default=None, metavar="TEXT",
                           help='a literal prompt template with one {} for the class name, e.g. "a photo of a {}"; '
                                "repeatable")
    parser.add_argument("--top", type=int, default=3, help="classes shown per input (default: %(default)s)")
    add_input_options(parser)
    add_common_options(parser)


def parse_classes(value: str) -> list[str] | str:
    """``"dog, cat"`` -> ``["dog", "cat"]``; a value without a comma is a class-list name."""
    if "," not in value:
        return value.strip()
    names = [name.strip() for name in value.split(",")]
    if not all(names):
        raise InputError(f"`--classes`: expected comma-separated non-empty names, got {value!r}")
    return names


def run(args: argparse.Namespace) -> int:
    """Classify and print the top classes per input."""
    from anybind.zero_shot import resolve_class_names, zero_shot

    batch_size = check_batch_size(args)
    if args.top < 1:
        raise InputError(f"`--top`: expected a positive integer, got {args.top}")
    names = resolve_class_names(parse_classes(args.classes))
    inputs = read_inputs(args.modality, args.inputs, args.glob, "inputs", args.text_file)
    model = load_model(args)
    templates = args.template if args.template is not None else args.templates
    probabilities = zero_shot(model, args.modality, inputs, names, templates=templates, batch_size=batch_size)
    top = probabilities.topk(min(args.top, len(names)), dim=1)
    rows = [{"input": str(item),
             "top": [{"class": names[c], "probability": float(p)} for p, c in zip(values.tolist(), classes.tolist())]}
            for item, values, classes in zip(inputs, top.values, top.indices)]
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        best = "  ".join(f"{entry['class']} {entry['probability']:.3f}" for entry in row["top"])
        print(f"{row['input']}: {best}")
    return 0
