"""Embedding a corpus in *parts* that many processes write independently, then merging them into one index.

The input list (modality by modality, in the order given) is cut into parts of at most
`part_rows` items of one modality; parts are numbered from 0 and part ``p`` belongs to rank
``p % world_size``. The plan depends only on the inputs and `part_rows`, never on the number
of processes, so a rerun with another world size reuses every finished part. A parts folder::

    my.index.parts/
      part-00003.npy     float32 [rows, D] vectors of part 3
      part-00003.jsonl   one metadata record per row: {"id", "modality", "source"}
      part-00003.json    the part's record, written last: plan key, rows, anchor, sizes + sha256

Each file is written to a temp name, fsynced and renamed (`anybind.atomic`), and the record
comes last, so a process killed mid-part leaves no part that looks finished. A rerun skips the
parts whose record matches the plan and whose files pass their checksums, and redoes the rest.
`merge_parts` streams the parts into the index format (`anybind.index.storage`) without holding
more than one part in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from anybind.atomic import atomic_write_bytes, atomic_write_json
from anybind.errors import AnchorMismatchError, InputError, InputFileError
from anybind.index.storage import SHARD_ROWS, StreamedShard, verify_file, write_index

if TYPE_CHECKING:
    from anybind.model import BoundModel

PART_FORMAT = "anybind.index-part"
PART_VERSION = 1
DEFAULT_PART_ROWS = 4096  # items per part: what a killed process loses at most, and one part's memory


@dataclass(frozen=True)
class Part:
    """One unit of work: items ``first .. first + len(items) - 1`` of the plan, all of one modality."""

    number: int
    modality: str
    first: int  # global row (and id) of the first item
    items: list[Any]


@dataclass(frozen=True)
class Plan:
    """The deterministic cut of the inputs into parts; `key` identifies the inputs and the cut."""

    parts: list[Part]
    key: str

    def for_rank(self, rank: int, world_size: int) -> list[Part]:
        """The parts of process `rank` out of `world_size`: numbers ``rank, rank + world_size, ...``."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise InputError(f"`rank`: expected 0 <= rank < world size {world_size}, got {rank}")
        return self.parts[rank::world_size]


def plan_parts(inputs: Mapping[str, Sequence[Any]], part_rows: int = DEFAULT_PART_ROWS) -> Plan:
    """Cut ``{"image": [...], "text": [...]}`` into parts of at most `part_rows` items of one modality.

    Items are paths or strings (anything else is described by its ``repr`` in the plan key).
    """
    if isinstance(part_rows, bool) or not isinstance(part_rows, int) or part_rows < 1:
        raise InputError(f"`part_rows`: expected a positive integer, got {part_rows!r}")
    if not isinstance(inputs, Mapping) or not inputs:
        raise InputError(f"`inputs`: expected a non-empty dict of modality -> list of inputs, got {inputs!r:.80}")
    digest = hashlib.sha256(f"part_rows={part_rows}\n".encode())
    parts: list[Part] = []
    first = 0
    for modality, items in inputs.items():
        items = list(items)
        if not items:
            raise InputError(f"`inputs[{modality!r}]`: expected at least one input, got none")
        for item in items:
            digest.update(json.dumps([modality, str(item)]).encode("utf-8") + b"\n")
        for start in range(0, len(items), part_rows):
            chunk = items[start:start + part_rows]
            parts.append(Part(number=len(parts), modality=modality, first=first, items=chunk))
            first += len(chunk)
    return Plan(parts=parts, key=digest.hexdigest())


def part_stem(number: int) -> str:
    """``part-00007`` for part 7."""
    return f"part-{number:05d}"


def _file_entry(path: Path, data: bytes) -> dict[str, Any]:
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def read_part_record(folder: Path, number: int) -> dict[str, Any] | None:
    """The record of part `number` in `folder`, or None when it is absent or unreadable."""
    try:
        record = json.loads((folder / f"{part_stem(number)}.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("format") == PART_FORMAT else None


def part_is_done(folder: Path, plan: Plan, part: Part, verify: bool = True) -> bool:
    """True when `part` has a record for this `plan` and its files pass their size and sha256 checks."""
    record = read_part_record(folder, part.number)
    if record is None or record.get("plan") != plan.key or record.get("rows") != len(part.items):
        return False
    if verify:
        try:
            for key in ("vectors", "metadata"):
                verify_file(folder / record[key]["file"], record[key])
        except (InputFileError, KeyError, TypeError):
            return False
    return True


def write_part(folder: Path, plan_key: str, total_parts: int, part: Part, vectors: np.ndarray,
               model_anchor: dict[str, Any], anchor_key: str) -> dict[str, Any]:
    """Atomically write part `part`'s vectors ``[rows, D]`` and metadata, then its record (last).

    `plan_key` and `total_parts` come from the run's `Plan`.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape[0] != len(part.items):
        raise InputError(f"part {part.number}: expected {len(part.items)} vectors, got {vectors.shape[0]}")
    stem = part_stem(part.number)
    buffer = _NpyBuffer()
    np.lib.format.write_array(buffer, vectors, allow_pickle=False)
    vector_bytes = bytes(buffer.data)
    lines = []
    for offset, item in enumerate(part.items):
        record: dict[str, Any] = {"id": part.first + offset, "modality": part.modality}
        if isinstance(item, (str, os.PathLike)):
            record["source"] = str(item)
        lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    metadata_bytes = "".join(lines).encode("utf-8")
    atomic_write_bytes(folder / f"{stem}.npy", vector_bytes)
    atomic_write_bytes(folder / f"{stem}.jsonl", metadata_bytes)
    record = {"format": PART_FORMAT, "version": PART_VERSION, "plan": plan_key, "part": part.number,
              "parts": total_parts, "modality": part.modality, "first": part.first, "rows": len(part.items),
              "dim": int(vectors.shape[1]), "anchor_key": anchor_key, "anchor": model_anchor,
              "vectors": _file_entry(folder / f"{stem}.npy", vector_bytes),
              "metadata": _file_entry(folder / f"{stem}.jsonl", metadata_bytes)}
    atomic_write_json(folder / f"{stem}.json", record)
    return record


class _NpyBuffer:
    """A minimal binary sink for `np.lib.format.write_array`."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes | memoryview) -> int:
        self.data += chunk
        return len(chunk)


def embed_parts(model: BoundModel, inputs: Mapping[str, Sequence[Any]], folder: str | Path, *, rank: int = 0,
                world_size: int = 1, part_rows: int = DEFAULT_PART_ROWS, batch_size: int | None = None,
                progress: bool | None = None, **options: Any) -> dict[str, int]:
    """Embed this rank's parts of `inputs` into the parts folder `folder`; skip parts already finished.

    Returns ``{"embedded": parts written now, "skipped": finished parts reused}``. Every
    rank of one run must pass the same `inputs` and `part_rows`. `batch_size`/`progress`/
    `options` go to `model.embed`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plan = plan_parts(inputs, part_rows)
    identity = model.anchor.identity.to_dict()
    done = {"embedded": 0, "skipped": 0}
    for part in plan.for_rank(rank, world_size):
        if part_is_done(folder, plan, part):
            done["skipped"] += 1
            continue
        items = model.bound(part.modality).modality.as_items(part.items)
        vectors = model.embed(part.modality, items, batch_size=batch_size, progress=progress, **options)
        write_part(folder, plan.key, len(plan.parts), part, vectors.as_subclass(torch.Tensor).numpy(), identity,
                   model.anchor_key)
        done["embedded"] += 1
    return done


def collect_parts(folder: str | Path, verify: bool = True) -> list[dict[str, Any]]:
    """The records of every part in `folder`, checked to form one complete run of one anchor.

    Raises `InputFileError` naming a missing or corrupt part, `AnchorMismatchError` when parts
    of different anchors are mixed, and `InputError` when parts of different runs are mixed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"`parts`: folder {str(folder)!r} does not exist")
    found: dict[int, dict[str, Any]] = {}
    for path in sorted(folder.glob("part-[0-9][0-9][0-9][0-9][0-9].json")):
        number = int(path.stem.split("-")[1])
        record = read_part_record(folder, number)
        if record is None:
            raise InputFileError(f"`parts`: part record {str(path)!r} is unreadable or not an anybind part")
        found[number] = record
    if not found:
        raise InputFileError(f"`parts`: folder {str(folder)!r} holds no finished parts (part-NNNNN.json)")
    first = found[min(found)]
    for number, record in found.items():
        if record.get("anchor_key") != first.get("anchor_key"):
            raise AnchorMismatchError(
                f"`parts`: part {number} was embedded with anchor {record.get('anchor_key')}, part {min(found)} with "
                f"anchor {first.get('anchor_key')}; vectors of different anchors cannot be merged into one index")
        if record.get("plan") != first.get("plan") or record.get("parts") != first.get("parts"):
            raise InputError(f"`parts`: part {number} belongs to another run (different inputs or part size) than "
                             f"part {min(found)}; use one folder per run")
        if record.get("dim") != first.get("dim"):
            raise InputError(f"`parts`: part {number} has dim {record.get('dim')}, part {min(found)} has "
                             f"{first.get('dim')}")
    total = int(first["parts"])
    missing = [number for number in range(total) if number not in found]
    if missing:
        shown = ", ".join(part_stem(n) for n in missing[:10])
        raise InputFileError(f"`parts`: {len(missing)} of {total} part(s) are missing in {str(folder)!r}: {shown}"
                             f"{' ...' if len(missing) > 10 else ''}; rerun the embedding to finish them")
    records = [found[number] for number in range(total)]
    if verify:
        for record in records:
            for key in ("vectors", "metadata"):
                verify_file(folder / record[key]["file"], record[key])
    return records


def _grouped_shards(folder: Path, records: list[dict[str, Any]], dim: int, shard_rows: int) -> Iterator[StreamedShard]:
    group: list[dict[str, Any]] = []
    rows = 0
    for record in records:
        if group and rows + record["rows"] > shard_rows:
            yield _streamed(folder, group, dim, rows)
            group, rows = [], 0
        group.append(record)
        rows += record["rows"]
    if group:
        yield _streamed(folder, group, dim, rows)


def _streamed(folder: Path, group: list[dict[str, Any]], dim: int, rows: int) -> StreamedShard:
    def chunks() -> Iterator[np.ndarray]:
        for record in group:
            yield np.load(folder / record["vectors"]["file"], allow_pickle=False)

    return StreamedShard(rows=rows, dim=dim, chunks=chunks)


def _records(folder: Path, records: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for record in records:
        with open(folder / record["metadata"]["file"], encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)


def merge_parts(folder: str | Path, path: str | Path, *, backend: str = "exact",
                backend_options: Mapping[str, Any] | None = None, verify: bool = True,
                shard_rows: int = SHARD_ROWS, model_spec: str | None = None) -> dict[str, Any]:
    """Assemble every part in `folder` into the index folder `path` (written atomically); returns its manifest.

    `model_spec` (a preset name or an absolute config/bundle path) is recorded as the model that
    built the index, for `search` and `index add` to use by default.

    Parts are streamed: at most one part is in memory. See `collect_parts` for the checks.
    """
    import anybind
    from anybind.index.vector_index import _check_backend

    folder = Path(folder)
    options = _check_backend(backend, backend_options or {})
    records = collect_parts(folder, verify=verify)
    dim = int(records[0]["dim"])
    count = sum(int(r["rows"]) for r in records)
    modalities: dict[str, int] = {}
    for record in records:
        modalities[record["modality"]] = modalities.get(record["modality"], 0) + int(record["rows"])
    manifest = {"anchor_key": records[0]["anchor_key"], "anchor": records[0].get("anchor"), "dim": dim,
                "count": count, "backend": backend, "backend_options": options, "next_id": count,
                "modalities": modalities, "created_by": f"anybind {anybind.__version__}"}
    if model_spec is not None:
        manifest["model"] = model_spec
    write_index(path, manifest, _grouped_shards(folder, records, dim, shard_rows), _records(folder, records))
    return manifest


def remove_parts(folder: str | Path) -> None:
    """Delete a parts folder's part files (and the folder when nothing else is in it)."""
    folder = Path(folder)
    for path in folder.glob("part-[0-9][0-9][0-9][0-9][0-9].*"):
        path.unlink(missing_ok=True)
    for path in folder.glob(".part-*.tmp"):
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass
