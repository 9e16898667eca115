"""Decode-once input cache of the trainer (``data.cache_inputs``): each input is loaded and
preprocessed once, then served from memory or from a memory-mapped on-disk store.

What is cached is the modality loader's output passed through the encoder's fixed
`Encoder.front_end` (audio: log-mels; point clouds: sampled, normalized clouds; depth:
masked disparity maps), one entry per input, split and re-joined by the modality
(`Modality.split_batch` / `Modality.join_batches`, so audio windows keep their own clip ids).

Keys are the sha256 of the input file's bytes within a *cache config* digest (modality,
encoder, preprocess config, load options, anchor pixel config, anybind version): an edited
file or a changed preprocess config is a miss, never a stale hit. Entries live

- in memory while their total size fits ``data.input_cache_memory_mb``;
- on disk under ``$ANYBIND_HOME/input-cache/<config digest>/`` (`FeatureStore`, shared by runs):
  safetensors chunks read through mmap, each made visible only by an atomically written JSON
  sidecar holding the chunk's sha256, which is verified before the chunk is used. A write killed
  midway leaves at most an unreferenced file, never a readable half-chunk.

Only deterministic loaders are cached by default (`Modality.deterministic_load`); a loader that
augments per call (random crops, noise) must stay uncached, or every step would see the same draw.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from anybind.atomic import atomic_write_bytes, atomic_write_json
from anybind.config import anybind_home
from anybind.errors import InputError

LOG = logging.getLogger("anybind.train")
STORE_FORMAT = 1
CONFIG_FILE = "config.json"
CHUNK_PREFIX = "chunk-"
STALE_TEMP_SECONDS = 3600  # temp files of killed writers older than this are deleted on open

Batch = Any  # a tensor or a dict of tensors (`anybind.modality.Batch`)


def content_digest(value: Any) -> str:
    """sha256 hex digest of JSON-serialized `value` (sorted keys; non-JSON values by `str`)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


class FileKeys:
    """Content keys of input files: sha256 of the bytes, memoized per (path, size, mtime) in this process."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}

    def __call__(self, path: Any) -> str:
        """The key of one input: ``sha256:<hex>`` of a file's bytes (non-path inputs: of their repr)."""
        if not (isinstance(path, str) or hasattr(path, "__fspath__")):
            return "repr:" + hashlib.sha256(repr(path).encode()).hexdigest()
        name = os.fspath(path)
        try:
            stat = os.stat(name)
        except OSError:
            return f"missing:{name}"  # the loader reports the missing file with its own message
        memo = (name, stat.st_size, stat.st_mtime_ns)
        key = self._known.get(memo)
        if key is None:
            digest = hashlib.sha256()
            with open(name, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
            key = self._known[memo] = "sha256:" + digest.hexdigest()
        return key


def _entry_tensors(entry: Batch, index: int) -> dict[str, torch.Tensor]:
    if isinstance(entry, torch.Tensor):
        return {f"{index}": entry}
    if isinstance(entry, Mapping) and all(isinstance(v, torch.Tensor) for v in entry.values()):
        return {f"{index}/{field}": value for field, value in entry.items()}
    raise InputError(f"`data.cache_inputs`: the modality's loader returned {type(entry).__name__}; the cache "
                     "needs a tensor or a dict of tensors (set `data.cache_inputs: false`)")


def batch_bytes(entry: Batch) -> int:
    """Bytes held by the tensors of a batch."""
    tensors = entry.values() if isinstance(entry, Mapping) else [entry]
    return sum(t.numel() * t.element_size() for t in tensors)


class FeatureStore:
    """On-disk, memory-mapped store of cached inputs for one cache config (see the module docstring).

    `folder` holds ``config.json`` (what the digest covers), ``chunk-<id>.safetensors`` data files
    and their ``chunk-<id>.json`` sidecars ({"file", "sha256", "keys", "fields"}). Several runs may
    read and add chunks at once: names are unique and every file appears by an atomic rename.
    """

    def __init__(self, folder: str | Path, description: Mapping[str, Any] | None = None) -> None:
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        if description is not None and not (self.folder / CONFIG_FILE).is_file():
            atomic_write_json(self.folder / CONFIG_FILE, {"format": STORE_FORMAT, **dict(description)})
        self._index: dict[str, tuple[str, int, tuple[str, ...] | None]] = {}  # key -> (chunk, position, fields)
        self._seen: set[str] = set()
        self._handles: dict[str, Any] = {}
        self._remove_stale_temp_files()
        self.refresh()

    def _remove_stale_temp_files(self) -> None:
        now = time.time()
        for temp in self.folder.glob(".*.tmp"):
            try:
                if now - temp.stat().st_mtime > STALE_TEMP_SECONDS:
                    temp.unlink()
            except OSError:
                pass

    def refresh(self) -> None:
        """Index the chunks that appeared since the last call; chunks failing verification are skipped."""
        for sidecar in sorted(self.folder.glob(f"{CHUNK_PREFIX}*.json")):
            if sidecar.name in self._seen:
                continue
            self._seen.add(sidecar.name)
            try:
                record = json.loads(sidecar.read_text())
                data = self.folder / record["file"]
                digest = hashlib.sha256(data.read_bytes()).hexdigest()
            except (OSError, ValueError, KeyError, TypeError) as error:
                LOG.warning("input cache: ignoring unreadable chunk %s (%s)", sidecar, error)
                continue
            if digest != record["sha256"]:
                LOG.warning("input cache: ignoring chunk %s: its data does not match the recorded sha256 "
                            "(corrupted on disk); its inputs will be recomputed", data)
                continue
            fields = tuple(record["fields"]) if record.get("fields") is not None else None
            for position, key in enumerate(record["keys"]):
                self._index.setdefault(key, (record["file"], position, fields))

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: str) -> Batch:
        """The cached entry of `key` (tensors read through mmap); KeyError when absent."""
        from safetensors import safe_open

        file, position, fields = self._index[key]
        handle = self._handles.get(file)
        if handle is None:
            handle = self._handles[file] = safe_open(str(self.folder / file), framework="pt")
        if fields is None:
            return handle.get_tensor(f"{position}")
        return {field: handle.get_tensor(f"{position}/{field}") for field in fields}

    def put(self, entries: Mapping[str, Batch]) -> None:
        """Write `entries` (key -> single-item batch) as one new chunk: data file, then its sidecar."""
        from safetensors.torch import save

        if not entries:
            return
        keys = list(entries)
        first = entries[keys[0]]
        fields = sorted(first) if isinstance(first, Mapping) else None
        tensors: dict[str, torch.Tensor] = {}
        for position, key in enumerate(keys):
            tensors.update({name: value.detach().to("cpu").contiguous()
                            for name, value in _entry_tensors(entries[key], position).items()})
        data = save(tensors)
        name = f"{CHUNK_PREFIX}{uuid.uuid4().hex}"
        atomic_write_bytes(self.folder / f"{name}.safetensors", data)
        atomic_write_json(self.folder / f"{name}.json", {"file": f"{name}.safetensors", "keys": keys, "fields": fields,
                                                         "sha256": hashlib.sha256(data).hexdigest()})
        self._seen.add(f"{name}.json")
        for position, key in enumerate(keys):
            self._index.setdefault(key, (f"{name}.safetensors", position, tuple(fields) if fields else None))


def default_store_folder(digest: str, cache_dir: str | Path | None = None) -> Path:
    """``<cache_dir or $ANYBIND_HOME/input-cache>/<digest[:24]>``."""
    root = Path(cache_dir).expanduser() if cache_dir else anybind_home() / "input-cache"
    return root / digest[:24]


class InputCache:
    """Wraps a `load(items) -> batch` function so that each input is loaded (and preprocessed) once.

    `split(batch, n)` / `join(parts)` turn a batch of n items into per-item entries and back
    (`Modality.split_batch` / `Modality.join_batches`; default: rows of a tensor or dict of tensors).
    `key_of(item)` gives an item's content key (default: the item itself); `store` an optional
    `FeatureStore`; entries stay in memory while they fit `memory_budget` bytes.
    """

    def __init__(self, load: Callable[[list[Any]], Batch], *,
                 split: Callable[[Batch, int], list[Batch]] | None = None,
                 join: Callable[[Sequence[Batch]], Batch] | None = None,
                 key_of: Callable[[Any], Hashable] | None = None, store: FeatureStore | None = None,
                 memory_budget: int = 2 << 30) -> None:
        from anybind.modality import join_rows

        self._load = load
        self._split = split or _default_split
        self._join = join or (lambda parts: _default_join(parts, join_rows))
        self._key_of = key_of or (lambda item: item)
        self.store = store
        self.memory_budget = memory_budget
        self.memory_bytes = 0
        self._rows: dict[Hashable, Batch] = {}
        self._over_budget_warned = False
        self.loaded = 0  # inputs loaded by the wrapped function (misses)
        self.from_store = 0  # inputs read from the on-disk store

    def __len__(self) -> int:
        return len(self._rows)

    def _keep(self, key: Hashable, entry: Batch) -> None:
        size = batch_bytes(entry)
        if self.memory_bytes + size <= self.memory_budget:
            self._rows[key] = entry
            self.memory_bytes += size
        elif not self._over_budget_warned:
            self._over_budget_warned = True
            LOG.info("input cache: %.0f MB memory budget full; further inputs are read from %s", self.memory_budget / 2**20,
                     self.store.folder if self.store is not None else "their files (no on-disk store)")

    @property
    def all_in_memory(self) -> bool:
        """True while no entry had to be left out of memory."""
        return not self._over_budget_warned

    def _entry(self, key: Hashable) -> Batch | None:
        entry = self._rows.get(key)
        if entry is None and self.store is not None and key in self.store:
            entry = self.store.get(key)  # type: ignore[arg-type]
            self.from_store += 1
            self._keep(key, entry)
        return entry

    def __call__(self, items: Sequence[Any]) -> Batch:
        """The batch of `items` (file paths), loading only those not cached yet."""
        keys = [self._key_of(item) for item in items]
        found: dict[Hashable, Batch] = {}
        missing: dict[Hashable, Any] = {}
        for key, item in zip(keys, items):
            if key in found or key in missing:
                continue
            entry = self._entry(key)
            if entry is None:
                missing[key] = item
            else:
                found[key] = entry
        if missing:
            loaded = self._load(list(missing.values()))
            entries = dict(zip(missing, self._split(loaded, len(missing))))
            self.loaded += len(entries)
            if self.store is not None:
                self.store.put(entries)  # type: ignore[arg-type]
            for key, entry in entries.items():
                self._keep(key, entry)
            found.update(entries)
        return self._join([found[key] for key in keys])

    def fill(self, items: Sequence[Any], chunk: int = 256, progress: bool = False) -> None:
        """Make sure every item of `items` is cached (loading misses `chunk` at a time)."""
        from tqdm.auto import tqdm

        todo = [item for item in dict.fromkeys(items) if self._entry(self._key_of(item)) is None]
        for start in tqdm(range(0, len(todo), chunk), desc="cache inputs", unit="chunk", disable=not progress):
            self(todo[start:start + chunk])


def _default_split(batch: Batch, count: int) -> list[Batch]:
    if isinstance(batch, torch.Tensor):
        return [batch[i:i + 1] for i in range(count)]
    if isinstance(batch, Mapping) and all(isinstance(v, torch.Tensor) for v in batch.values()):
        return [{key: value[i:i + 1] for key, value in batch.items()} for i in range(count)]
    raise InputError(f"`data.cache_inputs`: the modality's loader returned {type(batch).__name__}; the cache "
                     "needs a tensor or a dict of tensors (set `data.cache_inputs: false`)")


def _default_join(parts: Sequence[Batch], join_rows: Callable[[Sequence[torch.Tensor], str], torch.Tensor]) -> Batch:
    first = parts[0]
    if isinstance(first, Mapping):
        return {key: join_rows([part[key] for part in parts], "data.cache_inputs") for key in first}
    return join_rows(parts, "data.cache_inputs")
