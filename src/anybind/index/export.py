"""Exports of a saved index for the ecosystem: Parquet metadata (pyarrow) and a LanceDB table.

Parquet (`export_parquet`): one row per vector, in vector order (row ``i`` describes row ``i``
of the concatenated ``.npy`` shards, the layout clip-retrieval and autofaiss read), with
columns ``id``, ``modality`` and one column per user metadata field.

LanceDB (`export_lancedb`): the same columns plus ``vector`` (float32, fixed width), so users
search with their own LanceDB and keep the filters, e.g.
``table.search(q).metric("dot").where("modality = 'audio'", prefilter=True).limit(10)``.
Both stream the index: memory stays at one batch of rows. pyarrow and lancedb are optional
(``pip install anybind[scale]``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from anybind.atomic import atomic_write_bytes
from anybind.errors import InputError, MissingDependencyError
from anybind.index.storage import read_manifest, verify_file

BATCH_ROWS = 65536  # rows per Arrow record batch


def require_pyarrow() -> Any:
    """Import pyarrow, or raise `MissingDependencyError` naming the pip extra."""
    try:
        import pyarrow
    except ImportError:
        raise MissingDependencyError("Parquet/LanceDB export needs pyarrow: `pip install anybind[scale]` "
                                     "(or `pip install pyarrow`)") from None
    return pyarrow


def _records(folder: Path, manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    with open(folder / manifest["metadata"]["file"], encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _column_types(folder: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """One pass over the metadata: each column's kind (``int``, ``float``, ``bool``, ``str`` or ``json``)."""
    kinds: dict[str, set[str]] = {}
    for record in _records(folder, manifest):
        for key, value in record.items():
            if value is not None:
                kinds.setdefault(key, set()).add(type(value).__name__)
    out = {}
    for key, found in kinds.items():
        if found <= {"bool"}:
            out[key] = "bool"
        elif found <= {"int"}:
            out[key] = "int"
        elif found <= {"int", "float"}:
            out[key] = "float"
        elif found <= {"str"} or key == "id":
            out[key] = "str"
        else:
            out[key] = "json"
    out.setdefault("id", "int")
    out.setdefault("modality", "str")
    return out


def _schema(pa: Any, kinds: dict[str, str], dim: int | None) -> Any:
    types = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string(), "json": pa.string()}
    names = ["id", "modality", *sorted(k for k in kinds if k not in ("id", "modality"))]
    fields = [pa.field(name, types[kinds[name]]) for name in names]
    if dim is not None:
        fields.append(pa.field("vector", pa.list_(pa.float32(), dim)))
    return pa.schema(fields)


def _value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "json":
        return json.dumps(value, ensure_ascii=False)
    if kind == "str":
        return str(value)
    return value


def _batches(pa: Any, folder: Path, manifest: dict[str, Any], schema: Any, kinds: dict[str, str],
             with_vectors: bool) -> Iterator[Any]:
    from anybind.index.faiss_store import shard_chunks

    dim = int(manifest["dim"])
    vectors = _RowReader(shard_chunks(folder, manifest, BATCH_ROWS)()) if with_vectors else None
    records = _records(folder, manifest)
    names = [field.name for field in schema if field.name != "vector"]
    while True:
        batch = [record for _, record in zip(range(BATCH_ROWS), records)]
        if not batch:
            return
        columns = [pa.array([_value(r.get(name), kinds[name]) for r in batch], type=schema.field(name).type)
                   for name in names]
        if vectors is not None:
            rows = vectors.take(len(batch))
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), dim))
        yield pa.RecordBatch.from_arrays(columns, schema=schema)


class _RowReader:
    """Hands out exactly the asked number of rows from a stream of row chunks of any size."""

    def __init__(self, chunks: Iterator[np.ndarray]) -> None:
        self.chunks = chunks
        self.pending: np.ndarray | None = None

    def take(self, count: int) -> np.ndarray:
        """The next `count` rows as one ``[count, D]`` array."""
        pieces = []
        while count:
            if self.pending is None or not len(self.pending):
                chunk = next(self.chunks, None)
                if chunk is None:
                    raise InputError("index shards hold fewer rows than its metadata")
                self.pending = chunk.copy()  # the chunk source reuses its buffer
            piece, self.pending = self.pending[:count], self.pending[count:]
            pieces.append(piece)
            count -= len(piece)
        return np.concatenate(pieces)


def export_parquet(path: str | Path, out: str | Path, *, verify: bool = True) -> int:
    """Write the metadata of the index folder `path` as the Parquet file `out` (atomically); returns the row count."""
    pa = require_pyarrow()
    import pyarrow.parquet as pq

    folder = Path(path)
    manifest = read_manifest(folder)
    if verify:
        verify_file(folder / manifest["metadata"]["file"], manifest["metadata"])
    kinds = _column_types(folder, manifest)
    schema = _schema(pa, kinds, None)
    sink = pa.BufferOutputStream()
    rows = 0
    with pq.ParquetWriter(sink, schema) as writer:
        for batch in _batches(pa, folder, manifest, schema, kinds, with_vectors=False):
            writer.write_batch(batch)
            rows += batch.num_rows
    atomic_write_bytes(out, sink.getvalue().to_pybytes())
    return rows


def export_lancedb(path: str | Path, uri: str | Path, table: str = "anybind", *, verify: bool = True) -> int:
    """Write the index folder `path` (vectors + metadata) as LanceDB table `table` in database `uri` (replaced).

    Returns the row count. Rows keep their order, ids, modality and user metadata fields.
    """
    pa = require_pyarrow()
    try:
        import lancedb
    except ImportError:
        raise MissingDependencyError("LanceDB export needs lancedb: `pip install anybind[scale]` "
                                     "(or `pip install lancedb`)") from None
    if not isinstance(table, str) or not table.strip():
        raise InputError(f"`table`: expected a LanceDB table name, got {table!r}")
    folder = Path(path)
    manifest = read_manifest(folder)
    if verify:
        for entry in [*manifest["vectors"], manifest["metadata"]]:
            verify_file(folder / entry["file"], entry)
    kinds = _column_types(folder, manifest)
    schema = _schema(pa, kinds, int(manifest["dim"]))
    reader = pa.RecordBatchReader.from_batches(schema, _batches(pa, folder, manifest, schema, kinds, with_vectors=True))
    database = lancedb.connect(str(uri))
    created = database.create_table(table, data=reader, schema=schema, mode="overwrite")
    return int(created.count_rows())
