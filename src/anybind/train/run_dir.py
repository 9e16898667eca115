"""The run folder of a training job: ``run.json`` (what the run is), metrics, and its guard rails.

Layout::

    <output_dir>/run.json            kind, config, anchor identity (written at start)
    <output_dir>/checkpoints/        step-XXXXXXXX.safetensors (see `checkpoints`)
    <output_dir>/metrics.csv         one row per logged step
    <output_dir>/tensorboard/        TensorBoard event files
    <output_dir>/bundle/             the result (see `bundle`)

A folder that already holds a run is refused unless resuming (same config, same anchor) or
overwriting. Generic over the kind of training (``kind`` names it, e.g. ``"bind"``).
The process using a run folder holds an exclusive lock on ``<output_dir>/.lock`` (POSIX flock,
released when the process ends), so a second trainer on the same folder is refused.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from anybind.atomic import atomic_write_bytes, atomic_write_json, remove_temp_files
from anybind.errors import AnchorMismatchError, ConfigError, InputError

RUN_FILE = "run.json"
METRICS_FILE = "metrics.csv"
LOCK_FILE = ".lock"
LOG = logging.getLogger("anybind.train")
_held_locks: dict[Path, int] = {}  # resolved run folder -> open descriptor holding its flock


def _release_inherited_locks() -> None:
    """In a forked child (e.g. a DataLoader worker) close the copies of the run-folder lock descriptors:
    the flock belongs to the open file, so a child outliving a killed trainer would keep the folder locked."""
    for descriptor in _held_locks.values():
        try:
            os.close(descriptor)
        except OSError:
            pass
    _held_locks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_inherited_locks)


def lock_run_folder(folder: Path) -> None:
    """Take the exclusive lock of run folder `folder` for the rest of this process (idempotent).

    Raises `InputError` when another process holds it. A no-op where flock does not exist.
    """
    try:
        import fcntl
    except ImportError:
        return
    key = folder.resolve()
    if key in _held_locks:
        return
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(descriptor, 32).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise InputError(f"`output_dir`: run folder {str(folder)!r} is in use by another anybind process "
                         f"(pid {holder}); wait for it to finish or choose another folder") from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, str(os.getpid()).encode())
    _held_locks[key] = descriptor


def read_run(folder: Path) -> dict[str, Any] | None:
    """The ``run.json`` of `folder`, or None when there is none."""
    path = folder / RUN_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"`output_dir`: {str(path)!r} is unreadable ({error})") from None
    return data if isinstance(data, dict) else None


def check_run_folder(folder: Path, *, kind: str, config: Mapping[str, Any], anchor: Mapping[str, Any],
                     resume: bool, overwrite: bool,
                     differences: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]) -> bool:
    """Decide whether the run may use `folder`; True when an existing run will be resumed.

    Refuses (raising) a non-empty folder that is not a run, a run of another kind, and an
    existing run unless `resume` (then `differences(old, new)` must be empty and the anchor
    identical) or `overwrite`. `--resume` on a new or empty folder starts a fresh run.
    """
    if resume and overwrite:
        raise InputError("`--resume` and `--overwrite` exclude each other: pick one")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"`output_dir`: {str(folder)!r} is a file, expected a folder")
    if not folder.exists() or not any(p.name != LOCK_FILE for p in folder.iterdir()):
        return False
    run = read_run(folder)
    if run is None:
        raise InputError(f"`output_dir`: {str(folder)!r} is not empty and holds no anybind run ({RUN_FILE}); "
                         "choose a new or empty folder")
    lock_run_folder(folder)
    if overwrite:
        return False
    if not resume:
        changed = differences(run.get("config", {}), config)
        what = "this run" if not changed and run.get("kind") == kind else "a different run"
        raise InputError(f"`output_dir`: {str(folder)!r} already holds {what}"
                         + (f" (differs in {', '.join(changed[:6])})" if changed else "")
                         + "; pass --resume to continue it or --overwrite to replace it")
    if run.get("kind") != kind:
        raise ConfigError(f"`output_dir`: {str(folder)!r} holds a {run.get('kind')!r} run, cannot resume it as {kind!r}")
    changed = differences(run.get("config", {}), config)
    if changed:
        raise ConfigError(f"cannot resume the run in {str(folder)!r}: the config differs in "
                          f"{', '.join(changed)}; restore them or use --overwrite")
    if run.get("anchor") != dict(anchor):
        raise AnchorMismatchError(f"cannot resume the run in {str(folder)!r}: it was trained against anchor "
                                  f"{run.get('anchor')}, this config's anchor is {dict(anchor)}")
    return True


def start_run_folder(folder: Path, *, kind: str, config: Mapping[str, Any], anchor: Mapping[str, Any],
                     resumed: bool) -> None:
    """Create `folder` (emptied first when overwriting a run) and write ``run.json``; a resumed run's
    folder loses the temp files of writes a killed run left (it holds the run lock, so none is live)."""
    lock_run_folder(folder)
    if resumed:
        for place in (folder, folder / "checkpoints"):
            for debris in remove_temp_files(place):
                LOG.info("removed %s, left by a killed write", debris)
    if not resumed and read_run(folder) is not None:
        for child in folder.iterdir():
            if child.name != LOCK_FILE:
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    if not resumed:
        atomic_write_json(folder / RUN_FILE, {"kind": kind, "config": dict(config), "anchor": dict(anchor)})


class MetricsLog:
    """Appends metric rows to ``metrics.csv`` and TensorBoard; on resume, drops rows past the resumed step."""

    def __init__(self, folder: Path, columns: list[str], resume_step: int, tensorboard: bool) -> None:
        self.path = folder / METRICS_FILE
        self.columns = ["step"] + columns
        kept: list[dict[str, str]] = []
        if resume_step and self.path.is_file():
            with open(self.path, newline="") as handle:
                kept = [row for row in csv.DictReader(handle) if int(row["step"]) <= resume_step]
        lines = [",".join(self.columns)] + [",".join(row.get(c, "") or "" for c in self.columns) for row in kept]
        atomic_write_bytes(self.path, ("\n".join(lines) + "\n").encode())
        self._handle = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=self.columns, extrasaction="ignore")
        self._tensorboard = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(folder / "tensorboard"), purge_step=resume_step + 1)

    def write(self, step: int, values: Mapping[str, float]) -> None:
        """Log `values` at `step` (missing columns stay empty)."""
        self._writer.writerow({"step": step, **{k: f"{v:.6g}" for k, v in values.items()}})
        self._handle.flush()
        if self._tensorboard is not None:
            for name, value in values.items():
                self._tensorboard.add_scalar(name.replace("val_", "val/").replace("train_", "train/"), value, step)

    def close(self) -> None:
        """Flush and close the files."""
        self._handle.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_metrics(folder: str | Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` as dicts of floats (empty cells left out)."""
    with open(Path(folder) / METRICS_FILE, newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]
