"""In-memory cache of loaded modality inputs (``data.cache_inputs``): decode each file once.

Each input's loaded row (``batch[i:i+1]`` of a tensor batch, or of every tensor of a dict
batch) is kept after its first load, and batches are rebuilt by concatenation. Valid for
loaders that are deterministic per item and give every item the same shape (no per-batch
padding); a shape mismatch is an `InputError` asking to turn the cache off.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch

from anybind.errors import InputError


def _row(batch: Any, index: int) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch[index:index + 1].clone()
    if isinstance(batch, Mapping):
        return {key: _row(value, index) for key, value in batch.items()}
    raise InputError(f"`data.cache_inputs`: the modality's loader returned {type(batch).__name__}; the cache "
                     "needs a tensor or a dict of tensors (set `data.cache_inputs: false`)")


def _collate(rows: Sequence[Any]) -> Any:
    first = rows[0]
    if isinstance(first, Mapping):
        return {key: _collate([row[key] for row in rows]) for key in first}
    shapes = {tuple(row.shape[1:]) for row in rows}
    if len(shapes) > 1:
        raise InputError(f"`data.cache_inputs`: loaded inputs have different shapes {sorted(shapes)[:3]}; the "
                         "cache needs same-shape items (set `data.cache_inputs: false`)")
    return torch.cat(list(rows))


class InputCache:
    """Wraps a `load(keys) -> batch` function so that each key is loaded only once."""

    def __init__(self, load: Callable[[list[Any]], Any]) -> None:
        self._load = load
        self._rows: dict[Hashable, Any] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __call__(self, keys: Sequence[Any]) -> Any:
        """The batch of `keys` (file paths), loading only those not seen yet."""
        missing = [key for key in dict.fromkeys(keys) if key not in self._rows]
        if missing:
            loaded = self._load(missing)
            for index, key in enumerate(missing):
                self._rows[key] = _row(loaded, index)
        return _collate([self._rows[key] for key in keys])
