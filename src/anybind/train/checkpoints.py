"""Training checkpoints: any nested state (dicts, lists, tensors, numbers, strings) in one
safetensors file, written atomically, the last K kept.

Tensors go into the safetensors body; everything else (the nesting, numbers, RNG tuples)
into a JSON skeleton stored in the file's metadata, so nothing is ever unpickled. Usage::

    manager = CheckpointManager(run_dir / "checkpoints", keep_last=3)
    manager.save(step, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "rng": capture_rng_state(), "step": step})
    state = manager.load_latest()        # None when there is none

`capture_rng_state` / `restore_rng_state` cover Python, NumPy and torch (CPU and CUDA).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anybind.errors import CheckpointError
from anybind.atomic import atomic_save_safetensors

CHECKPOINT_PATTERN = re.compile(r"^step-(\d{8})\.safetensors$")
STATE_KEY = "anybind_checkpoint"
TENSOR_MARK = "__tensor__"
TUPLE_MARK = "__tuple__"
NUMPY_MARK = "__ndarray__"


def flatten_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state into a JSON-ready skeleton and a flat dict of tensors.

    Tensors (and NumPy arrays) are replaced by ``{"__tensor__": name}`` markers; tuples are
    kept as tuples on the way back. Dict keys may be str or int (optimizer states use ints).
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            name = f"t{len(tensors)}"
            tensors[name] = value
            return {TENSOR_MARK: name}
        if isinstance(value, np.ndarray):
            name = f"t{len(tensors)}"
            tensors[name] = torch.from_numpy(np.ascontiguousarray(value))
            return {NUMPY_MARK: name}
        if isinstance(value, Mapping):
            items = [[walk(k) if not isinstance(k, (str, int)) else k, walk(v)] for k, v in value.items()]
            return {"__dict__": items}
        if isinstance(value, tuple):
            return {TUPLE_MARK: [walk(v) for v in value]}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (np.integer, np.floating)):
            return value.item()
        raise CheckpointError(f"cannot checkpoint a value of type {type(value).__name__}: {value!r}"[:200])

    return walk(state), tensors


def unflatten_state(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of `flatten_state`."""
    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if TENSOR_MARK in value:
                return tensors[value[TENSOR_MARK]]
            if NUMPY_MARK in value:
                return tensors[value[NUMPY_MARK]].numpy()
            if TUPLE_MARK in value:
                return tuple(walk(v) for v in value[TUPLE_MARK])
            return {k: walk(v) for k, v in value["__dict__"]}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(skeleton)


def save_state(path: str | Path, state: Any) -> Path:
    """Write a nested `state` to one safetensors file atomically (see `flatten_state`)."""
    skeleton, tensors = flatten_state(state)
    return atomic_save_safetensors(path, tensors, {STATE_KEY: json.dumps(skeleton)})


def load_state(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Read a state written by `save_state`; raise `CheckpointError` naming the file if unreadable."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        skeleton = json.loads(metadata[STATE_KEY])
        return unflatten_state(skeleton, tensors)
    except CheckpointError:
        raise
    except Exception as error:  # corrupt header, truncated file, foreign file
        raise CheckpointError(f"checkpoint {str(path)!r} is not a readable anybind checkpoint ({error})") from None


class CheckpointManager:
    """Numbered checkpoints ``step-XXXXXXXX.safetensors`` in one folder, keeping the last `keep_last`."""

    def __init__(self, folder: str | Path, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise CheckpointError(f"`keep_last`: expected >= 1, got {keep_last}")
        self.folder = Path(folder)
        self.keep_last = keep_last

    def paths(self) -> list[Path]:
        """Existing checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if CHECKPOINT_PATTERN.match(p.name))

    def latest(self) -> Path | None:
        """The newest checkpoint, or None."""
        paths = self.paths()
        return paths[-1] if paths else None

    def save(self, step: int, state: Any) -> Path:
        """Write `state` as the checkpoint of `step` and delete all but the newest `keep_last`."""
        path = save_state(self.folder / f"step-{step:08d}.safetensors", state)
        for old in self.paths()[:-self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self, device: str | torch.device = "cpu") -> Any | None:
        """The newest checkpoint's state, or None when there is none."""
        latest = self.latest()
        return None if latest is None else load_state(latest, device)


def capture_rng_state() -> dict[str, Any]:
    """The RNG states of Python, NumPy and torch (CPU, and every CUDA device when available)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `capture_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))  # type: ignore[arg-type]
    torch.random.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
