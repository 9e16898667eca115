"""``anybind embed MODALITY PATH...``: embed files or folders into vector shards + metadata.

The output folder has the index format (``manifest.json``, ``.npy`` vector shards,
``metadata.jsonl``; see `anybind.index.storage`), so it loads with ``anybind.Index.load`` or
``numpy.load`` and can be searched directly. This module also holds the input helpers the
``index``, ``search`` and ``classify`` commands share, and `embed_into_index`, the path of
``embed`` and ``index build`` under ``torchrun`` (one process or many; see `anybind.index.parts`).
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


def add_scale_options(parser: argparse.ArgumentParser) -> None:
    """``--parts``, ``--part-rows``, ``--no-merge``, ``--keep-parts``, ``--parquet`` (the torchrun path)."""
    from anybind.index.parts import DEFAULT_PART_ROWS

    group = parser.add_argument_group("scale-out (run under `torchrun --nproc-per-node G -m anybind.cli ...`)")
    group.add_argument("--parts", default=None, metavar="DIR",
                       help="folder of per-process parts (default: OUT.parts); a rerun skips finished parts")
    group.add_argument("--part-rows", type=int, default=DEFAULT_PART_ROWS, metavar="N",
                       help="inputs per part (default: %(default)s)")
    group.add_argument("--no-merge", action="store_true",
                       help="only write this run's parts; assemble them later with `anybind index merge`")
    group.add_argument("--keep-parts", action="store_true", help="keep the parts folder after merging")
    group.add_argument("--parquet", default=None, metavar="FILE",
                       help="also write the row metadata as a Parquet file (row order = vector order)")


def embed_into_index(args: argparse.Namespace, inputs: dict[str, list[Any]], out: str, *, backend: str = "exact",
                     backend_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Embed `inputs` as this process's share of a torchrun job (rank 0 of 1 without torchrun), then on
    rank 0 merge every part into the index folder `out`. Returns rank 0's index summary (None on other
    ranks and with ``--no-merge``). A failure on any rank is raised on every rank."""
    import torch

    from anybind.index.parts import embed_parts
    from anybind.model import default_device
    from anybind.train import distributed

    batch_size = check_batch_size(args)
    if args.part_rows < 1:
        raise InputError(f"`--part-rows`: expected a positive integer, got {args.part_rows}")
    parts = Path(args.parts) if args.parts else Path(out).with_name(Path(out).name + ".parts")
    requested = torch.device(args.device) if args.device else default_device()
    created = distributed.join_process_group(requested)
    try:
        device = distributed.local_device(requested)
        rank, world_size = distributed.world()
        model = _load_model(args.model, str(device) if device != requested else args.device)
        error = None
        try:
            embed_parts(model, inputs, parts, rank=rank, world_size=world_size, part_rows=args.part_rows,
                        batch_size=batch_size)
        except Exception as failure:  # reported on every rank below, so no rank waits forever
            error = failure
        _raise_first(distributed.gather_objects(_describe(error)), error, "embedding")
        summary = None
        if rank == 0 and not args.no_merge:
            try:
                summary = _merge(parts, out, backend, backend_options or {}, args)
            except Exception as failure:
                error = failure
        _raise_first(distributed.gather_objects(_describe(error)), error, "merging")
        return summary
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _merge(parts: Path, out: str, backend: str, options: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from anybind.index import Index
    from anybind.index.parts import merge_parts, remove_parts

    from anybind.model import spec_reference

    model = getattr(args, "model", None)
    merge_parts(parts, out, backend=backend, backend_options=options,
                model_spec=spec_reference(model) if model is not None else None)
    if backend == "faiss":
        from anybind.index.faiss_store import build_faiss_index

        build_faiss_index(out, options)
    if args.parquet:
        from anybind.index.export import export_parquet

        export_parquet(out, args.parquet)
    if not args.keep_parts:
        remove_parts(parts)
    return Index.load(out, verify=False).info()


def _describe(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


def _raise_first(reports: list[str | None], own: BaseException | None, stage: str) -> None:
    """Re-raise this rank's own error, else the first other rank's as an `InputError` naming the rank."""
    if own is not None:
        raise own
    for rank, report in enumerate(reports):
        if report is not None:
            raise InputError(f"rank {rank} failed while {stage}: {report}")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``embed``."""
    parser = subparsers.add_parser(
        "embed", help="embed files or folders into vector shards + metadata",
        description="Embed inputs of one modality into an output folder of .npy vector shards, metadata.jsonl "
                    "and manifest.json (the index format: load it with anybind.Index.load). For `text`, "
                    "each argument is the text itself; --text-file FILE or @FILE gives one text per line of FILE.")
    parser.add_argument("modality", help="modality of the inputs, e.g. image, audio, text")
    parser.add_argument("inputs", nargs="+", help="files or folders (text: .txt files or literal texts)")
    parser.add_argument("--out", required=True, help="output folder (created, or replaced atomically)")
    add_input_options(parser)
    add_scale_options(parser)
    add_common_options(parser)
    return parser


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
