"""The on-disk index format (version 1) and its atomic save.

An index is a folder::

    my.index/
      manifest.json                  format, version, anchor identity, dim, count, files + sha256,
                                     optional "model": the model spec that built it (preset or path)
      vectors-<generation>-00000.npy float32 [rows, D] shards (memory-mappable)
      metadata-<generation>.jsonl    one JSON object per row: {"id", "modality", ...user fields}

Saving is atomic: the new shards and metadata are written under a fresh *generation* name next
to the old ones and fsynced, then ``manifest.json`` is replaced in one ``os.replace`` (a
single-file rename is atomic on POSIX and Windows, where swapping whole folders is not), and
only then are files of older generations deleted. A save killed at any point leaves the
previous manifest pointing at the previous, untouched files. Two saves into one folder take
turns (an flock on ``.lock``); a reader racing a save re-reads the new manifest. Every file's
size and sha256 are checked on load, so a truncated or modified file fails with an error naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from anybind.atomic import atomic_write_bytes, fsync_dir
from anybind.errors import InputError, InputFileError

FORMAT = "anybind.index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".lock"  # held (flock) by a saving process, so two saves into one folder take turns
SHARD_ROWS = 1 << 20  # rows per vector shard (2 GiB at D = 512)
_OWN_FILE = re.compile(r"^(vectors-[0-9a-f]+-\d{5}\.npy|metadata-[0-9a-f]+\.jsonl|\.manifest\.json\.[^/]*tmp|\.lock"
                       r"|faiss-[0-9a-f]+\.(index|json)|\.faiss-[0-9a-f]+\.(index|json)\.[^/]*tmp)$")


@dataclass(frozen=True)
class StoredIndex:
    """What `read_index` returns: the manifest fields and the loaded rows."""

    manifest: dict[str, Any]
    shards: list[np.ndarray]  # float32 [rows, D] each, memory-mapped when asked
    ids: list[int | str]  # per row, in row order
    modality_names: list[str]  # distinct modalities, in order of first appearance
    modality_codes: np.ndarray  # int32 [rows]: index into `modality_names`
    extra: list[dict[str, Any] | None]  # per row: user metadata fields, None when there are none


@dataclass(frozen=True)
class StreamedShard:
    """A vector shard of known shape written chunk by chunk, so a shard bigger than memory can be saved.

    `chunks` is called once while writing and yields float32 ``[n, dim]`` arrays whose row counts sum to `rows`.
    """

    rows: int
    dim: int
    chunks: Callable[[], Iterable[np.ndarray]]

    def write_to(self, writer: Any) -> None:
        """Write the ``.npy`` header for ``float32 [rows, dim]``, then every chunk's bytes."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (self.rows, self.dim)}
        np.lib.format.write_array_header_1_0(writer, header)
        written = 0
        for chunk in self.chunks():
            chunk = np.ascontiguousarray(chunk, dtype=np.float32)
            if chunk.ndim != 2 or chunk.shape[1] != self.dim:
                raise InputError(f"shard chunk: expected float32 [n, {self.dim}], got {list(chunk.shape)}")
            writer.write(memoryview(chunk).cast("B"))
            written += len(chunk)
        if written != self.rows:
            raise InputError(f"shard: expected {self.rows} rows from its chunks, got {written}")


class _HashingWriter:
    """A binary file wrapper that hashes and counts what is written through it."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)


def fsync_file(handle: BinaryIO) -> None:
    """Flush `handle` and force its bytes to disk."""
    handle.flush()
    os.fsync(handle.fileno())


def _write_file(path: Path, write: Any) -> dict[str, Any]:
    """Create `path`, let `write(writer)` fill it, fsync; return its name, size and sha256."""
    with open(path, "xb") as handle:
        writer = _HashingWriter(handle)
        write(writer)
        fsync_file(handle)
    return {"file": path.name, "bytes": writer.size, "sha256": writer.digest.hexdigest()}


def _check_target(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise InputFileError(f"`path`: {str(path)!r} exists and is not an index folder")
    if path.is_dir() and not (path / MANIFEST).is_file():
        foreign = [p.name for p in path.iterdir() if not _OWN_FILE.match(p.name)]
        if foreign:
            raise InputFileError(f"`path`: folder {str(path)!r} is not empty and holds no index "
                                 f"({MANIFEST} missing); refusing to write into it")


@contextlib.contextmanager
def save_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` while saving (POSIX flock; a no-op where unavailable)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(folder / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_index(path: str | Path, manifest: dict[str, Any], shards: Iterable[np.ndarray | StreamedShard],
                records: Iterable[dict[str, Any]]) -> None:
    """Atomically write an index folder at `path` (see the module docstring).

    `manifest` holds the format-independent fields (anchor, dim, count, backend...); this
    function adds the format, version and file entries.
    """
    path = Path(path)
    _check_target(path)
    path.mkdir(parents=True, exist_ok=True)
    with save_lock(path):
        _write_generation(path, manifest, shards, records)


def _write_generation(path: Path, manifest: dict[str, Any], shards: Iterable[np.ndarray | StreamedShard],
                      records: Iterable[dict[str, Any]]) -> None:
    generation = secrets.token_hex(8)
    vector_files = []
    for number, shard in enumerate(shards):
        target = path / f"vectors-{generation}-{number:05d}.npy"
        if isinstance(shard, StreamedShard):
            vector_files.append({**_write_file(target, shard.write_to), "rows": shard.rows})
            continue
        entry = _write_file(target, lambda w, s=shard: np.lib.format.write_array(w, np.ascontiguousarray(s),
                                                                                  allow_pickle=False))
        vector_files.append({**entry, "rows": len(shard)})

    def write_records(writer: _HashingWriter) -> None:
        for record in records:
            writer.write((json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))

    metadata_file = _write_file(path / f"metadata-{generation}.jsonl", write_records)
    full = {"format": FORMAT, "version": FORMAT_VERSION, **manifest, "generation": generation,
            "vectors": vector_files, "metadata": metadata_file}
    fsync_dir(path)  # the new shards' names are durable before the manifest points at them
    atomic_write_bytes(path / MANIFEST, json.dumps(full, indent=2).encode("utf-8"))
    for stale in path.iterdir():  # older generations and debris of killed saves
        if _OWN_FILE.match(stale.name) and generation not in stale.name and stale.name != LOCK:
            try:
                stale.unlink(missing_ok=True)
            except OSError:  # e.g. still memory-mapped on Windows; the next save retries
                pass


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Parse and check ``manifest.json`` of the index folder `path`."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.exists():
        raise InputFileError(f"`path`: index {str(path)!r} does not exist")
    if not manifest_path.is_file():
        raise InputFileError(f"`path`: {str(path)!r} is not an anybind index (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFileError(f"index manifest {str(manifest_path)!r} is unreadable or corrupt ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputFileError(f"{str(manifest_path)!r}: expected `format` {FORMAT!r}, "
                             f"got {manifest.get('format') if isinstance(manifest, dict) else manifest!r}")
    version = manifest.get("version")
    if not isinstance(version, int):
        raise InputFileError(f"{str(manifest_path)!r}: expected an integer `version`, got {version!r}")
    if version > FORMAT_VERSION:
        raise InputFileError(f"{str(path)!r} was saved by a newer anybind (index format version {version}, "
                             f"this anybind reads up to {FORMAT_VERSION}); upgrade anybind to load it")
    for key in ("dim", "count", "vectors", "metadata", "anchor_key"):
        if key not in manifest:
            raise InputFileError(f"{str(manifest_path)!r}: missing required key `{key}`")
    check_manifest_entries(manifest, path, manifest_path)
    return manifest


def confined_file(folder: Path, name: Any, where: str) -> Path:
    """`folder / name` for a plain file name that stays inside `folder`; else `InputFileError` naming `where`.

    A manifest may only name files in its own folder: no separators, no ``..``, no absolute
    paths, and no symlink that resolves elsewhere.
    """
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\x00" in name):
        raise InputFileError(f"{where}: expected the name of a file inside the index folder, got {name!r}")
    file = folder / name
    if file.is_symlink() and file.resolve().parent != folder.resolve():
        raise InputFileError(f"{where}: {name!r} is a symlink to {str(file.resolve())!r}, outside the index folder")
    return file


def check_manifest_entries(manifest: dict[str, Any], folder: Path, manifest_path: Path) -> None:
    """Check the types of a manifest's sizes and file entries, and confine every file to `folder`."""
    where = repr(str(manifest_path))
    for key, minimum in (("dim", 1), ("count", 0)):
        value = manifest[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InputFileError(f"{where}: `{key}` must be an integer >= {minimum}, got {value!r}")
    if not isinstance(manifest["anchor_key"], str):
        raise InputFileError(f"{where}: `anchor_key` must be a string, got {manifest['anchor_key']!r}")
    if not isinstance(manifest["vectors"], list):
        raise InputFileError(f"{where}: `vectors` must be a list of file entries, got {manifest['vectors']!r}")
    entries = [(f"`vectors[{n}]`", e, True) for n, e in enumerate(manifest["vectors"])]
    for label, entry, has_rows in [*entries, ("`metadata`", manifest["metadata"], False)]:
        fields = {"file": str, "bytes": int, "sha256": str, **({"rows": int} if has_rows else {})}
        if not isinstance(entry, dict):
            raise InputFileError(f"{where}: {label} must be an object with {', '.join(fields)}, got {entry!r}")
        for field, kind in fields.items():
            if not isinstance(entry.get(field), kind) or isinstance(entry.get(field), bool):
                raise InputFileError(f"{where}: {label}.{field} must be a {kind.__name__}, got {entry.get(field)!r}")
        confined_file(folder, entry["file"], f"{where}: {label}.file")


def verify_file(path: Path, entry: dict[str, Any]) -> None:
    """Check a file's size and sha256 against its manifest `entry`; raise `InputFileError` naming it."""
    if not path.is_file():
        raise InputFileError(f"index file {str(path)!r} is missing (listed in {MANIFEST})")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise InputFileError(f"index file {str(path)!r} is truncated or altered: {size} bytes, "
                             f"expected {entry['bytes']} (checksum check failed)")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    if digest.hexdigest() != entry["sha256"]:
        raise InputFileError(f"index file {str(path)!r} fails its sha256 checksum (expected "
                             f"{entry['sha256'][:16]}..., got {digest.hexdigest()[:16]}...): it was modified or corrupted")


def read_index(path: str | Path, mmap: bool = True, verify: bool = True) -> StoredIndex:
    """Read the index folder at `path`: checks format version and (when `verify`) every checksum.

    With `mmap` the vector shards are memory-mapped copy-on-write (nothing is read until searched).
    A read that races a save (the files it was about to open were replaced) starts over.
    """
    path = Path(path)
    for attempt in range(3):
        manifest = read_manifest(path)
        try:
            return _read_generation(path, manifest, mmap, verify)
        except InputFileError:
            if attempt == 2 or read_manifest(path).get("generation") == manifest.get("generation"):
                raise
    raise AssertionError("unreachable")


def _read_generation(path: Path, manifest: dict[str, Any], mmap: bool, verify: bool) -> StoredIndex:
    entries = [*manifest["vectors"], manifest["metadata"]]
    if verify:
        for entry in entries:
            verify_file(path / entry["file"], entry)
    shards = []
    for entry in manifest["vectors"]:
        file = path / entry["file"]
        try:
            shard = np.load(file, mmap_mode="c" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputFileError(f"index file {str(file)!r} is not a readable .npy array ({error})") from None
        if shard.dtype != np.float32 or shard.ndim != 2 or shard.shape != (entry["rows"], manifest["dim"]):
            raise InputFileError(f"index file {str(file)!r}: expected float32 [{entry['rows']}, {manifest['dim']}], "
                                 f"got {shard.dtype} {list(shard.shape)}")
        shards.append(shard)
    metadata_path = path / manifest["metadata"]["file"]
    ids: list[int | str] = []
    extra: list[dict[str, Any] | None] = []
    names: dict[str, int] = {}
    codes: list[int] = []
    try:
        with open(metadata_path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):  # parsed line by line: no list of a million dicts
                if not line.strip():
                    continue
                record = json.loads(line)
                if not isinstance(record, dict) or "id" not in record or "modality" not in record:
                    raise InputFileError(f"index file {str(metadata_path)!r}, line {number}: expected an object "
                                         "with `id` and `modality`")
                ids.append(record.pop("id"))
                codes.append(names.setdefault(record.pop("modality"), len(names)))
                extra.append(record or None)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFileError(f"index file {str(metadata_path)!r} is unreadable or corrupt ({error})") from None
    rows = sum(len(s) for s in shards)
    if len(ids) != rows or rows != manifest["count"]:
        raise InputFileError(f"index {str(path)!r} is inconsistent: manifest count {manifest['count']}, "
                             f"{rows} vector rows, {len(ids)} metadata rows")
    return StoredIndex(manifest=manifest, shards=shards, ids=ids, modality_names=list(names),
                       modality_codes=np.asarray(codes, dtype=np.int32), extra=extra)


def split_rows(rows: np.ndarray, shard_rows: int = SHARD_ROWS) -> list[np.ndarray]:
    """Split ``[N, D]`` rows into views of at most `shard_rows` rows."""
    if shard_rows < 1:
        raise InputError(f"`shard_rows`: expected a positive integer, got {shard_rows}")
    return [rows[start:start + shard_rows] for start in range(0, len(rows), shard_rows)]
