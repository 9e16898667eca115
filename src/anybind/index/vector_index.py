"""`Index`: any-to-any retrieval over unit-norm vectors of any modality in one anchor space."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anybind.anchor import AnchorIdentity
from anybind.embeddings import check_same_anchor
from anybind.embedder import Embedder
from anybind.errors import AnchorMismatchError, InputError
from anybind.index.exact import exact_search
from anybind.index.faiss_backend import FaissSearcher, parse_bytes
from anybind.index.kernels import SCAN_KERNELS, choose_scan_path
from anybind.index.quantized import LowPrecisionScan
from anybind.index.results import SearchResult
from anybind.index.storage import read_index, split_rows, write_index
from anybind.index.threads import faiss_threads, search_threads
from anybind.index.vectors import VectorStore
from anybind.modality import describe


BACKENDS = ("exact", "fast", "faiss")
BACKEND_OPTIONS = {"exact": ("device",), "fast": ("candidates", "scan_path"),
                   "faiss": ("memory_budget", "factory", "nprobe", "ef_search")}
RESERVED_KEYS = ("id", "modality")
NORM_TOLERANCE = 1e-3  # plain tensors further than this from unit norm are normalized, not rejected

Id = int | str


def _check_backend(backend: str, options: Mapping[str, Any]) -> dict[str, Any]:
    if backend not in BACKENDS:
        raise InputError(f"`backend`: expected one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    unknown = sorted(set(options) - set(BACKEND_OPTIONS[backend]))
    if unknown:
        allowed = ", ".join(BACKEND_OPTIONS[backend]) or "(none)"
        raise InputError(f"`backend_options`: unknown option(s) {', '.join(unknown)} for backend {backend!r}; "
                         f"allowed: {allowed}")
    if "memory_budget" in options:
        parse_bytes(options["memory_budget"])  # a bad budget fails now, not at the first search
    if "scan_path" in options and options["scan_path"] not in ("auto", *SCAN_KERNELS):
        choose_scan_path(requested=options["scan_path"])  # raises: an unknown path fails now, not at the first search
    return dict(options)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"`k`: expected a positive integer, got {k!r}")
    return int(k)


class Index:
    """Unit-norm vectors of any modality from one anchor, with ids and metadata, searchable by any modality.

    ``Index(model)`` (or ``Index(anchor_identity_or_key, dim)``) makes an empty index; `add`
    vectors of a modality, `search` with vectors of any modality (cosine similarity, best
    first), `remove` ids, `save` / `Index.load`. `Index.build(model, {"image": files, ...})`
    embeds and adds in one call.

    Vectors: `anybind.Embeddings` must carry this index's anchor (else `AnchorMismatchError`);
    plain tensors/arrays are accepted after checking their width, and every vector (added or
    queried) is L2-normalized, so scores are cosine similarities.

    Backends: ``"exact"`` (default; chunked float32 matrix product, bounded memory; option
    ``device`` scores on e.g. ``"cuda"``), ``"fast"``
    (low-precision scan chosen for the CPU -- int8 or bf16, see `anybind.index.kernels` -- plus
    exact float32 re-ranking of a shortlist that is checked per query: exact scores, ids match
    exact search; options ``candidates`` and ``scan_path``), ``"faiss"`` (approximate
    IVF/HNSW/IVF-PQ chosen from a memory budget). Every backend uses ``torch.get_num_threads()``
    threads (faiss included).
    """

    def __init__(self, anchor: Embedder | AnchorIdentity | str, dim: int | None = None, *,
                 backend: str = "exact", backend_options: Mapping[str, Any] | None = None) -> None:
        identity: AnchorIdentity | None
        model_spec: str | None = None
        if isinstance(anchor, AnchorIdentity):
            identity, key = anchor, anchor.key
        elif isinstance(anchor, str) and anchor:
            identity, key = None, anchor
        elif hasattr(anchor, "anchor_key") and hasattr(anchor, "dim"):
            identity, key = anchor.anchor.identity, anchor.anchor_key
            dim = anchor.dim if dim is None else dim
            model_spec = getattr(anchor, "spec", None)
        else:
            raise InputError(f"`anchor`: expected a BoundModel, an AnchorIdentity or an anchor key string, "
                             f"got {describe(anchor)}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InputError(f"`dim`: expected the vector width as a positive integer, got {dim!r}")
        self.anchor_key: str = key
        # The model that built the index, as `anybind.load` takes it (the CLI's default `--model`).
        self.model_spec = model_spec
        self.anchor_identity: dict[str, Any] | None = identity.to_dict() if identity is not None else None
        self.dim = dim
        self.backend = backend
        self.backend_options = _check_backend(backend, backend_options or {})
        self._store = VectorStore(dim)
        self._ids: list[Id] = []  # per row
        self._extra: list[dict[str, Any] | None] = []  # per row: user metadata, None when empty
        self._positions: dict[Id, int] = {}
        self._modality_codes = np.zeros(0, dtype=np.int32)
        self._modality_names: list[str] = []
        self._next_id = 0
        self._scan: LowPrecisionScan | None = None
        self._faiss: FaissSearcher | None = None
        self._persisted: tuple[Path, str, bool] | None = None  # (folder, generation, verify) the rows were loaded from

    # ----------------------------------------------------------------- building
    @classmethod
    def build(cls, model: Embedder, inputs: Mapping[str, Any], *, batch_size: int | None = None,
              progress: bool | None = None, backend: str = "exact",
              backend_options: Mapping[str, Any] | None = None, **options: Any) -> Index:
        """Embed ``{"audio": files, "image": files, "text": strings, ...}`` with `model` into a new index.

        Each row's metadata records its modality and, for path or string inputs, its ``source``.
        `batch_size`/`progress`/`options` go to `model.embed`.
        """
        index = cls(model, backend=backend, backend_options=backend_options)
        index.add_inputs(model, inputs, batch_size=batch_size, progress=progress, **options)
        return index

    def add_inputs(self, model: Embedder, inputs: Mapping[str, Any], *, batch_size: int | None = None,
                   progress: bool | None = None, **options: Any) -> list[Id]:
        """Embed ``{"audio": files, "text": strings, ...}`` with `model` and add them; returns the new ids.

        `model` must have this index's anchor. Metadata records each row's ``source`` for path
        or string inputs.
        """
        if model.anchor_key != self.anchor_key:
            raise AnchorMismatchError(f"`model` has anchor {model.anchor_key}, but this index holds anchor "
                                      f"{self.anchor_key}")
        if not isinstance(inputs, Mapping) or not inputs:
            raise InputError(f"`inputs`: expected a non-empty dict of modality -> inputs, got {describe(inputs)}")
        new_ids: list[Id] = []
        for modality, values in inputs.items():
            items = model.bound(modality).modality.as_items(values)
            vectors = model.embed(modality, items, batch_size=batch_size, progress=progress, **options)
            sources = [{"source": str(item)} if isinstance(item, (str, Path)) else {} for item in items]
            new_ids += self.add(vectors, metadata=sources, modality=modality)
        return new_ids

    def _as_matrix(self, vectors: Any, argument: str) -> torch.Tensor:
        """Validate and L2-normalize vectors -> a plain ``[N, D]`` float32 CPU tensor."""
        if isinstance(vectors, np.ndarray):
            vectors = torch.from_numpy(vectors)
        if not isinstance(vectors, torch.Tensor):
            raise InputError(f"`{argument}`: expected a [N, {self.dim}] tensor or array, got {describe(vectors)}")
        check_same_anchor(self.anchor_key, vectors, argument)
        matrix = vectors.as_subclass(torch.Tensor).detach()
        if matrix.ndim == 1:
            matrix = matrix.unsqueeze(0)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise InputError(f"`{argument}`: expected shape [N, {self.dim}] (the index's dimension), "
                             f"got {list(vectors.shape)}")
        if not (matrix.is_floating_point()):
            raise InputError(f"`{argument}`: expected floating-point vectors, got dtype {matrix.dtype}")
        matrix = matrix.to("cpu", torch.float32)
        if not bool(torch.isfinite(matrix).all()):
            bad = int((~torch.isfinite(matrix).all(dim=1)).sum())
            raise InputError(f"`{argument}`: expected finite vectors, got {bad} row(s) with NaN/inf")
        norms = matrix.norm(dim=1)
        if bool((norms == 0).any()):
            raise InputError(f"`{argument}`: got {int((norms == 0).sum())} all-zero vector(s), which have no direction")
        if bool(((norms - 1).abs() > NORM_TOLERANCE).any()) or matrix.data_ptr() == vectors.data_ptr():
            matrix = F.normalize(matrix, dim=1)  # also copies, so later edits of the caller's tensor do not leak in
        return matrix.contiguous()

    def _new_ids(self, ids: Sequence[Id] | None, count: int) -> list[Id]:
        if ids is None:
            out: list[Id] = []
            while len(out) < count:
                if self._next_id not in self._positions:
                    out.append(self._next_id)
                self._next_id += 1
            return out
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence) or len(ids) != count:
            raise InputError(f"`ids`: expected a list of {count} ids (one per vector), got {describe(ids)}")
        seen: set[Id] = set()
        for row_id in ids:
            if isinstance(row_id, bool) or not isinstance(row_id, (int, str, np.integer)):
                raise InputError(f"`ids`: expected int or str ids, got {describe(row_id)}")
            if row_id in seen or row_id in self._positions:
                where = "twice in `ids`" if row_id in seen else "already in the index"
                raise InputError(f"`ids`: duplicate id {row_id!r} ({where}); ids must be unique")
            seen.add(row_id)
        return [int(i) if isinstance(i, np.integer) else i for i in ids]

    @staticmethod
    def _user_metadata(metadata: Sequence[Mapping[str, Any]] | None, count: int) -> list[dict[str, Any]]:
        if metadata is None:
            return [{} for _ in range(count)]
        if not isinstance(metadata, Sequence) or len(metadata) != count:
            raise InputError(f"`metadata`: expected a list of {count} dicts (one per vector), got {describe(metadata)}")
        out = []
        for number, entry in enumerate(metadata):
            if not isinstance(entry, Mapping):
                raise InputError(f"`metadata[{number}]`: expected a dict, got {describe(entry)}")
            reserved = [key for key in entry if key in RESERVED_KEYS]
            if reserved:
                raise InputError(f"`metadata[{number}]`: keys {reserved} are reserved (set by the index)")
            try:
                json.dumps(entry)
            except (TypeError, ValueError) as error:
                raise InputError(f"`metadata[{number}]`: expected JSON-serializable values ({error})") from None
            out.append(dict(entry))
        return out

    def add(self, vectors: Any, ids: Sequence[Id] | None = None, metadata: Sequence[Mapping[str, Any]] | None = None,
            *, modality: str) -> list[Id]:
        """Add ``[N, D]`` vectors of `modality`; returns their ids (consecutive ints unless `ids` given).

        `metadata` is one JSON-serializable dict per vector (keys ``id``/``modality`` are reserved).
        """
        if not isinstance(modality, str) or not modality.strip():
            raise InputError(f"`modality`: expected the vectors' modality name (e.g. 'image'), got {modality!r}")
        matrix = self._as_matrix(vectors, "vectors")
        user = self._user_metadata(metadata, len(matrix))
        new_ids = self._new_ids(ids, len(matrix))
        if modality not in self._modality_names:
            self._modality_names.append(modality)
        code = self._modality_names.index(modality)
        start = len(self._store)
        self._store.append(matrix.numpy())
        self._ids.extend(new_ids)
        self._extra.extend(fields or None for fields in user)
        self._positions.update((row_id, start + offset) for offset, row_id in enumerate(new_ids))
        self._modality_codes = np.concatenate([self._modality_codes, np.full(len(matrix), code, dtype=np.int32)])
        self._invalidate()
        return new_ids

    def remove(self, ids: Sequence[Id] | Id) -> int:
        """Remove the rows with these ids (all must exist); returns how many were removed."""
        if isinstance(ids, (int, str)) and not isinstance(ids, bool):
            wanted = [ids]
        elif isinstance(ids, (Sequence, np.ndarray, torch.Tensor)) and not isinstance(ids, (bytes, bytearray)):
            wanted = ids.tolist() if isinstance(ids, (np.ndarray, torch.Tensor)) else list(ids)
        else:
            raise InputError(f"`ids`: expected an id (int or str) or a list of ids, got {ids!r}")
        bad = [row_id for row_id in wanted if isinstance(row_id, bool) or not isinstance(row_id, (int, str))]
        if bad:
            raise InputError(f"`ids`: ids are ints or strings, got {bad[0]!r} ({type(bad[0]).__name__})")
        missing = [row_id for row_id in wanted if row_id not in self._positions]
        if missing:
            raise InputError(f"`ids`: {len(missing)} id(s) not in the index, e.g. {missing[:5]!r}")
        keep = np.ones(len(self), dtype=bool)
        keep[[self._positions[row_id] for row_id in wanted]] = False
        self._store.keep(keep)
        self._ids = [row_id for row_id, kept in zip(self._ids, keep) if kept]
        self._extra = [fields for fields, kept in zip(self._extra, keep) if kept]
        self._modality_codes = self._modality_codes[keep]
        self._positions = {row_id: position for position, row_id in enumerate(self._ids)}
        self._invalidate()
        return int((~keep).sum())

    def _invalidate(self) -> None:
        self._scan = None
        self._faiss = None
        self._persisted = None  # the saved faiss index no longer matches the rows

    # ----------------------------------------------------------------- searching
    def _row_mask(self, modality: str | Sequence[str] | None) -> torch.Tensor | None:
        if modality is None:
            return None
        wanted = [modality] if isinstance(modality, str) else list(modality)
        if not wanted or not all(isinstance(m, str) for m in wanted):
            raise InputError(f"`modality`: expected None, a modality name or a list of names, got {modality!r}")
        codes = [self._modality_names.index(m) for m in wanted if m in self._modality_names]
        mask = np.isin(self._modality_codes, codes)
        if not mask.any():
            raise InputError(f"`modality`: the index has no rows of modality {', '.join(map(repr, wanted))}; "
                             f"it holds {self._describe_modalities()}")
        return None if mask.all() else torch.from_numpy(mask)

    def _describe_modalities(self) -> str:
        return ", ".join(f"{name}: {count}" for name, count in self.modality_counts().items()) or "nothing"

    def search(self, queries: Any, k: int = 10, modality: str | Sequence[str] | None = None, *,
               backend: str | None = None) -> SearchResult:
        """Top-`k` rows by cosine similarity for each query vector ``[Q, D]`` (or one ``[D]`` vector).

        `modality` restricts hits to rows of that modality (or list of modalities). When fewer
        than `k` rows match, all of them are returned. `backend` overrides the index's backend
        for this call.
        """
        k = _check_k(k)
        if len(self) == 0:
            raise InputError("`index` is empty: add vectors before searching")
        matrix = self._as_matrix(queries, "queries")
        row_mask = self._row_mask(modality)
        allowed = len(self) if row_mask is None else int(row_mask.sum())
        k = min(k, allowed)
        chosen = backend or self.backend
        options = _check_backend(chosen, self.backend_options if chosen == self.backend else {})
        if chosen == "fast":
            if self._scan is None or self._scan.requested != options.get("scan_path"):
                self._scan = LowPrecisionScan(self._store, options.get("scan_path"))
            scores, positions = self._scan.search(matrix, k, row_mask, options.get("candidates"))
        elif chosen == "faiss":
            if self._faiss is None:
                self._faiss = FaissSearcher(self._store, persisted=self._persisted, **options)
            with faiss_threads():
                scores, positions = self._faiss.search(matrix, k, row_mask)
        else:
            scores, positions = exact_search(self._store, matrix, k, row_mask, device=options.get("device"))
        ids = [[self._ids[p] if p >= 0 else None for p in row] for row in positions.tolist()]
        metadata = [[self._record(p) if p >= 0 else {} for p in row] for row in positions.tolist()]
        return SearchResult(scores=scores, ids=ids, metadata=metadata)

    # ----------------------------------------------------------------- inspecting
    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, row_id: object) -> bool:
        return row_id in self._positions

    @property
    def ids(self) -> list[Id]:
        """Every row's id, in row order."""
        return list(self._ids)

    def metadata(self, row_id: Id) -> dict[str, Any]:
        """The metadata of one row (``id``, ``modality`` and user fields)."""
        if row_id not in self._positions:
            raise InputError(f"`row_id`: {row_id!r} is not in the index")
        return self._record(self._positions[row_id])

    def _record(self, position: int) -> dict[str, Any]:
        """The stored form of one row's metadata: ``{"id", "modality", ...user fields}``."""
        return {"id": self._ids[position], "modality": self._modality_names[self._modality_codes[position]],
                **(self._extra[position] or {})}

    def vectors(self) -> torch.Tensor:
        """All rows as a ``[N, D]`` float32 tensor (shares memory with a single loaded shard)."""
        return torch.from_numpy(self._store.as_array())

    def modality_counts(self) -> dict[str, int]:
        """Rows per modality."""
        counts = Counter(self._modality_codes.tolist())
        return {name: counts[code] for code, name in enumerate(self._modality_names) if counts[code]}

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary: count, dim, anchor, backend, search path, rows per modality."""
        summary = {"count": len(self), "dim": self.dim, "anchor": self.anchor_key, "model": self.model_spec,
                   "backend": self.backend,
                   "backend_options": self.backend_options, "search_path": self.search_path(),
                   "modalities": self.modality_counts()}
        if self.backend == "faiss" and self._persisted is not None:
            from anybind.index.faiss_store import read_faiss_tag

            tag = read_faiss_tag(self._persisted[0], self._persisted[1])
            if tag is not None:
                summary["faiss"] = {key: tag.get(key) for key in ("factory", "file", "bytes", "train_rows",
                                                                   "recall_at_10", "recall_queries")}
        return summary

    def search_path(self, backend: str | None = None) -> dict[str, Any]:
        """Which kernel path `search` runs on this machine with `backend` (default: the index's).

        ``{"kernel": "int8-fbgemm", "reason": "AVX512-VNNI", "threads": 2}`` for ``fast``;
        ``exact`` is ``"fp32"`` (BLAS), ``faiss`` its factory string once built.
        """
        chosen = backend or self.backend
        options = self.backend_options if chosen == self.backend else {}
        if chosen == "fast":
            scan = choose_scan_path(requested=options.get("scan_path"))
            kernel, reason = scan.name, scan.reason
        elif chosen == "faiss":
            factory = self._faiss.factory if self._faiss is not None else options.get("factory")
            kernel, reason = f"faiss {factory or '(chosen from the memory budget at first search)'}", "backend"
        else:
            device = options.get("device")
            kernel, reason = ("fp32", "full float32 scan") if device is None else (f"fp32 on {device}", "device option")
        return {"kernel": kernel, "reason": reason, "threads": search_threads()}

    def __repr__(self) -> str:
        return f"Index(count={len(self)}, dim={self.dim}, anchor={self.anchor_key!r}, backend={self.backend!r})"

    # ----------------------------------------------------------------- storage
    def save(self, path: str | Path) -> None:
        """Atomically write the index folder `path` (a killed save leaves the previous index intact)."""
        import anybind

        manifest = {"anchor_key": self.anchor_key, "anchor": self.anchor_identity, "dim": self.dim,
                    "count": len(self), "backend": self.backend, "backend_options": self.backend_options,
                    "next_id": self._next_id, "modalities": self.modality_counts(),
                    "created_by": f"anybind {anybind.__version__}"}
        if self.model_spec is not None:
            manifest["model"] = self.model_spec
        shards = [shard for segment in self._store.segments for shard in split_rows(segment)]
        write_index(path, manifest, shards, (self._record(p) for p in range(len(self))))
        if self.backend == "faiss" and len(self):
            from anybind.index.faiss_store import build_faiss_index

            tag = build_faiss_index(path, self.backend_options)  # streamed from the shards just written
            self._faiss, self._persisted = None, (Path(path), tag["generation"], False)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True, *, verify: bool = True, backend: str | None = None) -> Index:
        """Read an index saved by `save`; vectors are memory-mapped when `mmap`.

        `verify` checks every file's sha256 (reads each file once). `backend` overrides the saved one.
        """
        stored = read_index(path, mmap=mmap, verify=verify)
        manifest = stored.manifest
        identity = AnchorIdentity.from_dict(manifest["anchor"]) if manifest.get("anchor") else manifest["anchor_key"]
        saved_backend = manifest.get("backend", "exact")
        index = cls(identity, manifest["dim"], backend=backend or saved_backend,
                    backend_options=manifest.get("backend_options") if (backend or saved_backend) == saved_backend else None)
        for shard in stored.shards:
            index._store.append(shard)
        index._ids = stored.ids
        index._extra = stored.extra
        index._positions = {row_id: position for position, row_id in enumerate(index._ids)}
        if len(index._positions) != len(index._ids):
            raise InputError(f"`path`: index {str(path)!r} holds duplicate ids")
        index._modality_names = stored.modality_names
        index._modality_codes = stored.modality_codes
        index._next_id = int(manifest.get("next_id", len(index._ids)))
        model_spec = manifest.get("model")  # optional: absent in indexes saved before it was recorded
        index.model_spec = model_spec if isinstance(model_spec, str) and model_spec else None
        index._persisted = (Path(path), manifest["generation"], verify)
        return index
