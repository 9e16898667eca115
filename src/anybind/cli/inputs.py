"""Input handling shared by the CLI commands (`embed`, `index`, `search`, `classify`, `demo`, `eval`):
loading the model a command names (or the one an index records), batch-size checks, and turning
command-line arguments into inputs (files, folders with ``--glob``, literal texts, ``@FILE`` /
``--text-file``).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anybind.errors import InputError, InputFileError

if TYPE_CHECKING:
    from anybind.index import Index
    from anybind.model import BoundModel


@functools.lru_cache(maxsize=2)
def _load_model(spec: str, device: str | None) -> BoundModel:
    import anybind

    model = anybind.load(spec, device=device)
    if model.anchor.identity.tag is None:  # seeded random init (e.g. the default `tiny` preset)
        print(f"anybind: note: model {spec!r} has a random-init anchor: its vectors carry no meaning (fine for "
              "smoke tests); pass --model with a pretrained preset or a trained bundle folder", file=sys.stderr)
    return model


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


TEXT_FILE_PREFIX = "@"  # `@captions.txt` names a text file; every other text argument is literal


def read_text_file(given: str, argument: str) -> list[str]:
    """The non-empty lines of UTF-8 text file `given` (a BOM is allowed); never a folder.

    Raises `InputFileError` naming `argument` for a missing path, a folder, an unreadable file
    or bytes that are not UTF-8.
    """
    path = Path(given)
    if not path.exists():
        raise InputFileError(f"`{argument}`: text file {given!r} does not exist")
    if path.is_dir():
        raise InputFileError(f"`{argument}`: expected a text file (one text per line), got the folder {given!r}; "
                             "texts are never read from folders")
    try:
        data = path.read_bytes()
    except PermissionError:
        raise InputFileError(f"`{argument}`: text file {given!r} cannot be read (permission denied)") from None
    except OSError as error:
        raise InputFileError(f"`{argument}`: text file {given!r} cannot be read ({error.strerror or error})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputFileError(f"`{argument}`: text file {given!r} is not UTF-8 text (byte 0x{data[error.start]:02x} at "
                             f"offset {error.start}); re-save it as UTF-8") from None
    if "\x00" in text:
        raise InputFileError(f"`{argument}`: text file {given!r} holds NUL bytes; expected UTF-8 text, one text "
                             "per line (is it a binary file?)")
    lines = [line.strip() for line in text.splitlines()]
    texts = [line for line in lines if line]
    if not texts:
        raise InputFileError(f"`{argument}`: text file {given!r} holds no non-empty lines")
    return texts


def read_inputs(modality: str, values: list[str], pattern: str, argument: str,
                text_files: list[str] | None = None) -> list[Any]:
    """Command-line values -> model inputs: files and folders of files; for ``text``, each value is
    the text itself, except ``@FILE`` (and each of `text_files`), which gives the file's non-empty
    lines. A text that should start with "@" is written "@@..."."""
    text_files = list(text_files or [])
    if text_files and modality != "text":
        raise InputError(f"`--text-file`: only for text inputs, but the modality is {modality!r}")
    if not values and not text_files:
        raise InputError(f"`{argument}`: expected at least one path (or text), got none")
    if modality != "text":
        return [str(path) for path in expand_paths(values, pattern, argument)]
    texts: list[Any] = []
    for index, value in enumerate(values):
        if value.startswith(TEXT_FILE_PREFIX * 2):
            texts.append(value[1:])
        elif value.startswith(TEXT_FILE_PREFIX):
            texts.extend(read_text_file(value[1:], f"{argument}[{index}]"))
        elif not value.strip():
            raise InputError(f"`{argument}[{index}]`: expected a non-empty text, got {value!r}")
        else:
            texts.append(value)
    for given in text_files:
        texts.extend(read_text_file(given, "--text-file"))
    return texts


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """``--glob`` for folder expansion, ``--text-file`` for texts read from files."""
    parser.add_argument("--glob", default="*", metavar="PATTERN",
                        help="inside folders, embed only files matching PATTERN, e.g. '*.wav' (default: all files)")
    parser.add_argument("--text-file", action="append", default=[], metavar="FILE",
                        help="read texts from FILE, one per line (UTF-8; repeatable). Text arguments are literal "
                             "texts; '@FILE' also names a text file")
