"""``anybind embed MODALITY PATH...``: embed files or folders into vector shards + metadata.

The output folder has the index format (``manifest.json``, ``.npy`` vector shards,
``metadata.jsonl``; see `anybind.index.storage`), so it loads with ``anybind.Index.load`` or
``numpy.load`` and can be searched directly. This module also holds the input helpers the
``index``, ``search`` and ``classify`` commands share.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anybind.cli import add_common_options, print_json
from anybind.errors import InputError, InputFileError

if TYPE_CHECKING:
    from anybind.index import Index
    from anybind.model import BoundModel


@functools.lru_cache(maxsize=2)
def _load_model(spec: str, device: str | None) -> BoundModel:
    import anybind

    return anybind.load(spec, device=device)


def load_model(args: argparse.Namespace) -> BoundModel:
    """The model named by ``--model`` on ``--device`` (loaded once per process)."""
    return _load_model(args.model, args.device)


def load_model_for_index(args: argparse.Namespace, index: Index, path: str) -> BoundModel:
    """The model for reading/growing `index`: ``--model`` when given, else the one recorded in the
    index manifest; raises when neither names one or the model's anchor differs from the index's."""
    from anybind.errors import AnchorMismatchError

    spec = args.model if args.model is not None else index.model_spec
    if spec is None:
        raise InputError(f"`--model`: index {path!r} does not record the model that built it (it was saved by an "
                         "older anybind or from plain vectors); pass --model PRESET_OR_PATH")
    model = _load_model(spec, args.device)
    if model.anchor_key != index.anchor_key:
        given = "`--model`" if args.model is not None else "the recorded model"
        raise AnchorMismatchError(f"{given} {spec!r} has anchor {model.anchor_key}, but index {path!r} holds anchor "
                                  f"{index.anchor_key}")
    return model


def check_batch_size(args: argparse.Namespace) -> int | None:
    """``--batch-size`` validated (None when not given)."""
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"`--batch-size`: expected a positive integer, got {args.batch_size}")
    return args.batch_size  # type: ignore[no-any-return]


def expand_paths(paths: list[str], pattern: str, argument: str) -> list[Path]:
    """Files as given, folders replaced by their non-hidden files matching `pattern` (recursive, sorted)."""
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob(pattern)
                           if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise InputFileError(f"`{argument}`: folder {given!r} holds no files matching {pattern!r}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputFileError(f"`{argument}`: {given!r} does not exist")
    return files


def read_inputs(modality: str, values: list[str], pattern: str, argument: str) -> list[Any]:
    """Command-line values -> model inputs: files and folders of files; for ``text``, each existing
    file contributes its non-empty lines and any other value is the text itself."""
    if not values:
        raise InputError(f"`{argument}`: expected at least one path (or text), got none")
    if modality != "text":
        return [str(path) for path in expand_paths(values, pattern, argument)]
    texts: list[Any] = []
    for value in values:
        path = Path(value)
        if path.exists():
            for file in expand_paths([value], pattern, argument):
                lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
                texts.extend(line for line in lines if line)
        else:
            texts.append(value)
    return texts


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """``--glob`` for folder expansion."""
    parser.add_argument("--glob", default="*", metavar="PATTERN",
                        help="inside folders, embed only files matching PATTERN, e.g. '*.wav' (default: all files)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``embed``."""
    parser = subparsers.add_parser(
        "embed", help="embed files or folders into vector shards + metadata",
        description="Embed inputs of one modality into an output folder of .npy vector shards, metadata.jsonl "
                    "and manifest.json (the index format: load it with anybind.Index.load). For `text`, a file "
                    "gives one text per line and any other argument is the text itself.")
    parser.add_argument("modality", help="modality of the inputs, e.g. image, audio, text")
    parser.add_argument("inputs", nargs="+", help="files or folders (text: .txt files or literal texts)")
    parser.add_argument("--out", required=True, help="output folder (created, or replaced atomically)")
    add_input_options(parser)
    add_common_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Embed and write the output folder."""
    from anybind.index import Index

    batch_size = check_batch_size(args)
    model = load_model(args)
    inputs = read_inputs(args.modality, args.inputs, args.glob, "inputs")
    index = Index.build(model, {args.modality: inputs}, batch_size=batch_size)
    index.save(args.out)
    summary = {"out": str(args.out), "modality": args.modality, "count": len(index), "dim": index.dim,
               "anchor": index.anchor_key}
    if args.json:
        print_json(summary)
    else:
        print(f"embedded {len(index)} {args.modality} input(s) -> {args.out} (dim {index.dim}, anchor {index.anchor_key})")
    return 0
