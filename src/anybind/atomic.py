"""Atomic file writes: a temp file in the same folder, flushed and fsynced, then `os.replace`d.

A reader never sees a half-written checkpoint, cache shard, index manifest, world manifest or
bundle file, even when the writer is killed mid-write. Every writer in anybind uses these.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write `data` as indented JSON to `path` atomically."""
    return atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_save_safetensors(path: str | Path, tensors: Mapping[str, torch.Tensor],
                            metadata: Mapping[str, str] | None = None) -> Path:
    """Save `tensors` (made contiguous, on CPU) as a safetensors file at `path` atomically."""
    from safetensors.torch import save

    ready = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    return atomic_write_bytes(path, save(ready, metadata=dict(metadata) if metadata else None))


def fsync_dir(folder: Path) -> None:
    """Force a folder's entries (new names, renames) to disk; a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def swap_in_folder(staging: Path, folder: Path) -> Path:
    """Put the fully written folder `staging` at `folder`, replacing any old one.

    Each step is a rename, so `folder` is always either the old complete folder or the new one
    (a reader may find it missing for the instant between the two renames, never half-written).
    """
    fsync_dir(staging)
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(folder)
    fsync_dir(folder.parent)
    return folder


def _lock_folder(folder: Path, blocking: bool) -> int | None:
    """An open descriptor of `folder` holding its flock, or None when another process holds it
    (or locks are unavailable: then nothing is ever treated as abandoned)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


def remove_abandoned_staging(folder: Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` staging folders of `folder` left by killed writers; return them.

    A live writer holds a lock on its staging folder (see `staged_folder`), so only folders
    nobody holds are removed.
    """
    removed = []
    for candidate in folder.parent.glob(f".{folder.name}.*.tmp"):
        if not candidate.is_dir() or candidate.is_symlink():
            continue
        descriptor = _lock_folder(candidate, blocking=False)
        if descriptor is None:
            continue
        try:
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
        finally:
            os.close(descriptor)
    return removed


@contextlib.contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a fresh temp folder beside `folder` to fill; on success swap it in (`swap_in_folder`),
    on any error delete it, so `folder` is only ever the old or the new complete folder.

    Staging folders of earlier writers that were killed are removed first; this writer locks
    its own staging folder until it is swapped in, so concurrent writers never remove each other's.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(folder)
    temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    descriptor = _lock_folder(temp, blocking=True)
    try:
        yield temp
        swap_in_folder(temp, folder)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        if descriptor is not None:
            os.close(descriptor)

