"""Atomic file writes: a temp file in the same folder, flushed and fsynced, then `os.replace`d.

A reader never sees a half-written checkpoint, cache shard, index manifest, world manifest or
bundle file, even when the writer is killed mid-write. Every writer in anybind uses these.

`tempfile` creates files 0600 and folders 0700; before a temp file or folder is renamed into
place it gets the mode an ordinary ``open()`` / ``mkdir()`` would give under the current umask,
so another user or a serving container can read what anybind writes.
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


def current_umask() -> int:
    """The process umask (e.g. ``0o022``), read without changing it where Linux reports it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no way to read it without setting it elsewhere
    os.umask(mask)
    return mask


def ordinary_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` minus the umask."""
    return 0o666 & ~current_umask()


def ordinary_folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: ``0o777`` minus the umask."""
    return 0o777 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp file path beside `path` for a writer that needs a file name (e.g. ``faiss.write_index``).

    When the block ends normally, the file written there gets the umask's mode, is fsynced and
    renamed onto `path`; when it raises, the temp file is removed. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temp)
        os.chmod(temp, ordinary_file_mode())
        with open(temp, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (parent folders are created; the file gets the umask's mode)."""
    with atomic_path(path) as temp, open(temp, "wb") as file:
        file.write(data)
    return Path(path)


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


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the ``.<name>.<random>.tmp`` files `atomic_path` writers left in `folder` when killed; return them.

    Only for folders with one writer at a time that holds a lock while it runs (a run folder, an
    index folder): a live writer's temp file would be removed too.
    """
    removed = []
    for candidate in folder.glob(".*.tmp"):
        if candidate.is_file() and not candidate.is_symlink():
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
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
        os.chmod(temp, ordinary_folder_mode())
        yield temp
        swap_in_folder(temp, folder)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        if descriptor is not None:
            os.close(descriptor)

