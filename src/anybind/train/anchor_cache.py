"""The frozen-anchor vector store: anchor vectors of every partner, computed once, kept on disk.

Vectors live under ``$ANYBIND_HOME/anchor-cache/<anchor digest>/`` (``ANYBIND_HOME`` defaults
to ``~/.cache/anybind``), one folder per anchor identity, holding ``anchor.json`` (the identity)
and safetensors shards. Each vector is keyed by its partner's content: ``image:<sha256 of the
file bytes>`` or ``caption:<sha256 of the text>``, so renamed files still hit the cache and an
edited file is recomputed.

A changed anchor is an error, never a silent mix: a cache folder whose ``anchor.json`` names a
different identity raises `AnchorMismatchError`, and a few cached vectors are recomputed on use
(``verify``); if they no longer match what the anchor computes (weights or preprocessing changed
under the same identity) that is an `AnchorMismatchError` too, asking to delete the folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from anybind.anchor import AnchorIdentity, sha256_file
from anybind.atomic import atomic_save_safetensors, atomic_write_json
from anybind.config import anybind_home
from anybind.errors import AnchorMismatchError, CheckpointError

if TYPE_CHECKING:
    from anybind.model import BoundModel

IDENTITY_FILE = "anchor.json"
SHARD_PREFIX = "vectors-"
VERIFY_TOLERANCE = 1e-3  # max |difference| between a cached and a recomputed unit vector
PARTNER_MODALITY = {"image": "image", "caption": "text"}  # manifest partner column -> anchor modality




def identity_digest(identity: AnchorIdentity) -> str:
    """A folder-safe digest of the full anchor identity."""
    return hashlib.sha256(json.dumps(identity.to_dict(), sort_keys=True).encode()).hexdigest()[:24]


def partner_key(kind: str, value: str) -> str:
    """The cache key of a partner: ``image:<sha256 of file bytes>`` or ``<kind>:<sha256 of text>``."""
    if kind == "image":
        return f"image:{sha256_file(value)}"
    return f"{kind}:{hashlib.sha256(value.encode('utf-8')).hexdigest()}"


class AnchorVectorCache:
    """On-disk store of unit-norm anchor vectors ``[D]`` keyed by partner content, for one anchor."""

    def __init__(self, folder: str | Path, identity: AnchorIdentity) -> None:
        self.folder = Path(folder).expanduser()
        self.identity = identity
        marker = self.folder / IDENTITY_FILE
        if marker.is_file():
            try:
                stored = AnchorIdentity.from_dict(json.loads(marker.read_text()))
            except (ValueError, KeyError, TypeError) as error:
                raise CheckpointError(f"anchor cache {str(marker)!r} is unreadable ({error}); delete the folder") from None
            if stored != identity:
                raise AnchorMismatchError(
                    f"anchor cache folder {str(self.folder)!r} holds vectors of anchor {stored.key}, but this run's "
                    f"anchor is {identity.key}; point `data.anchor_cache_dir` elsewhere or delete the folder")
        else:
            atomic_write_json(marker, identity.to_dict())
        self._vectors: dict[str, torch.Tensor] = {}
        self._read_shards()

    @classmethod
    def for_anchor(cls, identity: AnchorIdentity, folder: str | Path | None = None) -> AnchorVectorCache:
        """The cache of `identity` in `folder`, default ``$ANYBIND_HOME/anchor-cache/<digest>``."""
        return cls(folder if folder is not None else anybind_home() / "anchor-cache" / identity_digest(identity),
                   identity)

    def _read_shards(self) -> None:
        from safetensors import safe_open

        for shard in sorted(self.folder.glob(f"{SHARD_PREFIX}*.safetensors")):
            try:
                with safe_open(str(shard), framework="pt") as handle:
                    metadata = handle.metadata() or {}
                    vectors = handle.get_tensor("vectors")
                keys = json.loads(metadata["keys"])
                anchor = metadata.get("anchor")
            except Exception as error:  # corrupt shard: safetensors/json raise various types
                raise CheckpointError(f"anchor cache shard {str(shard)!r} is unreadable ({error}); delete it") from None
            if anchor != self.identity.key:
                raise AnchorMismatchError(f"anchor cache shard {str(shard)!r} was written by anchor {anchor}, "
                                          f"expected {self.identity.key}; delete the folder {str(self.folder)!r}")
            self._vectors.update(zip(keys, vectors))

    def __contains__(self, key: str) -> bool:
        return key in self._vectors

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, keys: Sequence[str]) -> torch.Tensor:
        """``[N, D]`` float32 vectors of `keys` (all must be present)."""
        return torch.stack([self._vectors[k] for k in keys])

    def add(self, keys: Sequence[str], vectors: torch.Tensor) -> None:
        """Store ``[N, D]`` `vectors` under `keys` as one new shard (atomic write)."""
        if not keys:
            return
        vectors = vectors.detach().float().cpu()
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        atomic_save_safetensors(self.folder / f"{SHARD_PREFIX}{digest}.safetensors", {"vectors": vectors},
                                {"keys": json.dumps(list(keys)), "anchor": self.identity.key})
        self._vectors.update(zip(keys, vectors))


def embed_partners(model: BoundModel, kinds: Sequence[str], values: Sequence[str], batch_size: int | None = None,
                   progress: bool = False) -> torch.Tensor:
    """``[N, D]`` unit-norm anchor vectors of partners (``image`` paths embedded as images, others as text)."""
    out = torch.empty(len(values), model.dim)
    for kind in sorted(set(kinds)):
        positions = [i for i, k in enumerate(kinds) if k == kind]
        vectors = model.embed(PARTNER_MODALITY.get(kind, "text"), [values[i] for i in positions],
                              batch_size=batch_size, progress=progress)
        out[positions] = vectors.as_subclass(torch.Tensor)
    return out


def cached_anchor_vectors(model: BoundModel, cache: AnchorVectorCache, kinds: Sequence[str], values: Sequence[str],
                          verify: int = 2, batch_size: int | None = None, progress: bool = False) -> torch.Tensor:
    """``[N, D]`` anchor vectors of the partners, computing and storing only those not cached yet.

    Up to `verify` already-cached vectors are recomputed first; a mismatch raises
    `AnchorMismatchError` (the anchor changed under the same identity).
    """
    keys = [partner_key(k, v) for k, v in zip(kinds, values)]
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    cached = [i for k, i in first.items() if k in cache]
    if verify and cached:
        check = cached[:verify]
        fresh = embed_partners(model, [kinds[i] for i in check], [values[i] for i in check], batch_size)
        stored = cache.get([keys[i] for i in check])
        difference = float((fresh - stored).abs().max())
        if difference > VERIFY_TOLERANCE:
            raise AnchorMismatchError(
                f"anchor cache {str(cache.folder)!r}: cached vectors differ from what anchor {cache.identity.key} "
                f"computes now (max difference {difference:.3g}); the anchor's weights or preprocessing changed "
                f"without changing its identity. Delete the folder to recompute")
    missing = [i for k, i in first.items() if k not in cache]
    if missing:
        vectors = embed_partners(model, [kinds[i] for i in missing], [values[i] for i in missing], batch_size, progress)
        cache.add([keys[i] for i in missing], vectors)
    return cache.get(keys)
