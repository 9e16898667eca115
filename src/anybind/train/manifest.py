"""Paired-data manifests: CSV or JSONL files whose rows pair an input file with a partner.

A binding manifest row pairs a modality input (a file path, relative to the manifest) with an
anchor-side partner, either an ``image`` path or a ``caption``; an optional ``split`` column
(``train`` / ``val``) fixes the validation split::

    input,image,caption,split
    clips/dog.wav,,a dog barking,train
    clips/rain.wav,photos/rain.jpg,,val

The readers are generic (any input column, any partner columns) so other trainers reuse them:
an image-text trainer reads ``image`` as the input column and ``caption`` as the partner.
Every row is validated up front; a bad row is an error naming the file and line, or, with
``skip_bad_rows``, skipped and counted.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anybind.errors import InputError, InputFileError

SPLITS = ("train", "val")
IMAGE_PARTNER = "image"
CAPTION_PARTNER = "caption"


@dataclass(frozen=True)
class ManifestRow:
    """One data row of a manifest: its 1-based line number and its non-empty string fields."""

    manifest: Path
    line: int
    fields: dict[str, str]

    @property
    def where(self) -> str:
        """``'file.csv' line N`` for messages."""
        return f"manifest {str(self.manifest)!r} line {self.line}"


@dataclass(frozen=True)
class Pair:
    """A validated pair: an input file and its partner (an image path or a caption)."""

    manifest: Path
    line: int
    input: Path  # absolute path of the input file
    input_value: str  # the input as written in the manifest (used by the seeded split)
    partner_kind: str  # the partner column that is filled, e.g. "image" or "caption"
    partner: str  # absolute image path, or the caption text
    split: str | None  # "train" / "val" from a `split` column, else None

    @property
    def where(self) -> str:
        """``'file.csv' line N`` for messages."""
        return f"manifest {str(self.manifest)!r} line {self.line}"


@dataclass
class PairSet:
    """The pairs read from one manifest, and the rows skipped (``(where, reason)``) when allowed."""

    pairs: list[Pair]
    skipped: list[tuple[str, str]] = field(default_factory=list)


class BadRow(Exception):
    """Internal: one row failed validation (turned into an `InputError` or a skip)."""

    def __init__(self, message: str, file_problem: bool = False) -> None:
        super().__init__(message)
        self.file_problem = file_problem


def json_objects(lines: Iterable[str], where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for each non-blank line of a JSON-lines text; a line that is not a JSON
    object raises `InputFileError` naming `where` (e.g. ``"manifest 'x.jsonl'"``) and the line."""
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputFileError(f"{where} line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise InputFileError(f"{where} line {number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def read_manifest_rows(path: str | Path, argument: str = "data.manifest") -> tuple[list[str], list[ManifestRow]]:
    """Parse a ``.csv`` (header row) or ``.jsonl`` (one object per line) manifest.

    Returns the column names and the rows (blank fields dropped). Raises `InputFileError`
    naming `argument` when the file is missing, and naming the line when it cannot be parsed.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputFileError(f"`{argument}`: manifest {str(path)!r} " +
                             ("does not exist" if not path.exists() else "is not a file"))
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise InputFileError(f"`{argument}`: expected a .csv or .jsonl manifest, got {str(path)!r}")
    rows: list[ManifestRow] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:  # -sig: tolerate a BOM (spreadsheet exports)
            if suffix == ".csv":
                reader = csv.DictReader(handle)
                columns = [c.strip() for c in reader.fieldnames or []]
                repeated = sorted({c for c in columns if columns.count(c) > 1})
                if repeated:
                    raise InputFileError(f"`{argument}`: manifest {str(path)!r} names column(s) "
                                         f"{', '.join(map(repr, repeated))} more than once in its header; each column "
                                         "must appear once")
                for record in reader:
                    if None in record:
                        raise InputFileError(f"manifest {str(path)!r} line {reader.line_num}: more fields than "
                                             f"the header's {len(columns)} columns")
                    values = {k.strip(): (v or "").strip() for k, v in record.items()}
                    rows.append(ManifestRow(path, reader.line_num, {k: v for k, v in values.items() if v}))
            else:
                seen: dict[str, None] = {}
                for number, record in json_objects(handle, f"manifest {str(path)!r}"):
                    seen.update(dict.fromkeys(record))
                    values = {str(k): ("" if v is None else str(v)).strip() for k, v in record.items()}
                    rows.append(ManifestRow(path, number, {k: v for k, v in values.items() if v}))
                columns = list(seen)
    except UnicodeDecodeError as error:
        raise InputFileError(f"`{argument}`: manifest {str(path)!r} is not UTF-8 text ({error})") from None
    except csv.Error as error:
        raise InputFileError(f"`{argument}`: manifest {str(path)!r} is not valid CSV ({error})") from None
    if not rows:
        raise InputError(f"`{argument}`: manifest {str(path)!r} has no data rows")
    return columns, rows


def check_image_file(path: Path) -> None:
    """Raise `BadRow` when `path` is not a readable image (header check with PIL, no full decode)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise BadRow(f"image file {str(path)!r} is not a readable image ({error})", file_problem=True) from None


def _existing_file(row: ManifestRow, column: str) -> Path:
    value = row.fields[column]
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = row.manifest.parent / path
    if not path.is_file():
        state = "is a directory" if path.is_dir() else "does not exist"
        raise BadRow(f"`{column}` file {str(path)!r} {state}", file_problem=True)
    return path


def _row_to_pair(row: ManifestRow, input_column: str, partner_columns: Sequence[str], has_split: bool) -> Pair:
    if input_column not in row.fields:
        raise BadRow(f"empty `{input_column}`")
    filled = [c for c in partner_columns if c in row.fields]
    if len(filled) != 1:
        raise BadRow(f"expected exactly one of {', '.join(f'`{c}`' for c in partner_columns)}, got "
                     + (", ".join(f"`{c}`" for c in filled) if filled else "none"))
    kind = filled[0]
    input_path = _existing_file(row, input_column)
    if kind == IMAGE_PARTNER:
        image_path = _existing_file(row, kind)
        check_image_file(image_path)
        partner = str(image_path)
    else:
        partner = row.fields[kind]
    split = row.fields.get("split") if has_split else None
    if has_split and split not in SPLITS:
        raise BadRow(f"`split` must be one of {', '.join(SPLITS)}, got {split!r}")
    return Pair(row.manifest, row.line, input_path, row.fields[input_column], kind, partner, split)


def check_inputs_loadable(pairs: list[Pair], load: Callable[[list[Path]], Any], chunk: int = 64,
                          progress: bool = False) -> list[tuple[Pair, str]]:
    """The pairs whose input `load` rejects, with the reason.

    `load` takes a list of paths and raises (an `AnybindError`, ideally) on a corrupt file; chunks are
    loaded together and retried one by one only when a chunk fails. `progress` shows a tqdm bar.
    """
    from anybind.progress import progress_bar

    bad: list[tuple[Pair, str]] = []
    for start in progress_bar(range(0, len(pairs), chunk), desc="check inputs", unit="chunk", disable=not progress):
        group = pairs[start:start + chunk]
        try:
            load([p.input for p in group])
            continue
        except Exception:  # noqa: BLE001 - a plugin's loader may raise anything on a corrupt file
            pass
        for pair in group:
            try:
                load([pair.input])
            except Exception as error:  # noqa: BLE001
                bad.append((pair, f"`input` file {str(pair.input)!r} could not be loaded ({error})"))
    return bad


def _fail_or_skip(where: str, reason: str, skip_bad_rows: bool, skipped: list[tuple[str, str]],
                  file_problem: bool) -> None:
    if not skip_bad_rows:
        error_cls = InputFileError if file_problem else InputError
        raise error_cls(f"{where}: {reason} (set `data.skip_bad_rows: true` to skip bad rows)")
    skipped.append((where, reason))


def read_pairs(path: str | Path, *, input_column: str = "input",
               partner_columns: Sequence[str] = (IMAGE_PARTNER, CAPTION_PARTNER), skip_bad_rows: bool = False,
               load_inputs: Callable[[list[Path]], Any] | None = None, argument: str = "data.manifest",
               progress: bool = False) -> PairSet:
    """Read and validate every row of a paired manifest.

    Each row needs a file in `input_column` and exactly one of `partner_columns` (an ``image``
    partner must be a readable image file; any other partner is text). `load_inputs`, if
    given, is tried on every input file to detect corrupt ones (`progress`: a tqdm bar). Missing
    columns always raise;
    bad rows (missing/corrupt files, empty fields, bad ``split``, duplicates) raise naming the
    line, or are skipped and listed in `PairSet.skipped` when `skip_bad_rows`.
    """
    columns, rows = read_manifest_rows(path, argument)
    missing = [c for c in [input_column] if c not in columns]
    if missing or not any(c in columns for c in partner_columns):
        need = missing + ([] if any(c in columns for c in partner_columns)
                          else [" or ".join(f"{c}" for c in partner_columns)])
        raise InputError(f"`{argument}`: manifest {str(rows[0].manifest)!r} lacks column(s) "
                         f"{', '.join(repr(c) for c in need)}; found columns {', '.join(map(repr, columns))}")
    has_split = "split" in columns
    skipped: list[tuple[str, str]] = []
    pairs: list[Pair] = []
    seen: dict[tuple[str, str, str], int] = {}
    for row in rows:
        try:
            pair = _row_to_pair(row, input_column, partner_columns, has_split)
        except BadRow as bad:
            _fail_or_skip(row.where, str(bad), skip_bad_rows, skipped, bad.file_problem)
            continue
        key = (str(pair.input), pair.partner_kind, pair.partner)
        if key in seen:
            _fail_or_skip(row.where, f"duplicates line {seen[key]} (same `{input_column}` and "
                          f"`{pair.partner_kind}`)", skip_bad_rows, skipped, False)
            continue
        seen[key] = row.line
        pairs.append(pair)
    if load_inputs is not None:
        bad_inputs = check_inputs_loadable(pairs, load_inputs, progress=progress)
        for pair, reason in bad_inputs:
            _fail_or_skip(pair.where, reason, skip_bad_rows, skipped, True)
        dropped = {id(pair) for pair, _ in bad_inputs}
        pairs = [p for p in pairs if id(p) not in dropped]
    if not pairs:
        raise InputError(f"`{argument}`: manifest {str(path)!r} has no usable rows ({len(skipped)} skipped)")
    return PairSet(pairs, skipped)


def seeded_is_val(value: str, seed: int, val_fraction: float) -> bool:
    """The seeded split rule: a row is held out when hash(seed, input) falls below `val_fraction`.

    Depends only on the input's manifest value, so rows sharing an input share a split and the
    split does not change when rows are added or reordered.
    """
    digest = hashlib.sha256(f"{seed}:{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def split_pairs(pairs: list[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, val): by the ``split`` column when present, else by `seeded_is_val`."""
    if any(p.split is not None for p in pairs):
        return [p for p in pairs if p.split == "train"], [p for p in pairs if p.split == "val"]
    val = [p for p in pairs if seeded_is_val(p.input_value, seed, val_fraction)]
    held = {id(p) for p in val}
    return [p for p in pairs if id(p) not in held], val
