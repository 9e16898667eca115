"""Containment and debris: manifests stay in their folder, run folders are locked, staging debris goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from anybind import Index
from anybind.atomic import staged_folder
from anybind.errors import InputError, InputFileError
from anybind.train.run_dir import LOCK_FILE, check_run_folder, start_run_folder


def _saved_index(folder: Path) -> Path:
    index = Index("test:anchor", 8)
    index.add(F.normalize(torch.randn(3, 8), dim=1), modality="image")
    index.save(folder)
    return folder


def _edit(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _set(path: tuple, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(manifest: dict[str, Any]) -> None:
        target = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest.pop(key)


MANIFEST_CASES = [
    ("metadata outside", _set(("metadata", "file"), "../outside.jsonl"), ["`metadata`.file",
                                                                          "inside the index folder", "../outside"]),
    ("absolute vectors", _set(("vectors", 0, "file"), "/etc/passwd"), ["`vectors[0]`.file", "'/etc/passwd'"]),
    ("dot-dot", _set(("metadata", "file"), ".."), ["inside the index folder", "'..'"]),
    ("file not a string", _set(("metadata", "file"), 7), ["`metadata`.file must be a str", "7"]),
    ("bytes a string", _set(("vectors", 0, "bytes"), "12"), ["`vectors[0]`.bytes must be a int", "'12'"]),
    ("rows missing", lambda m: m["vectors"][0].pop("rows"), ["`vectors[0]`.rows must be a int", "None"]),
    ("vectors not a list", _set(("vectors",), {"file": "x"}), ["`vectors` must be a list"]),
    ("entry not an object", _set(("metadata",), "metadata.jsonl"), ["`metadata` must be an object"]),
    ("dim a string", _set(("dim",), "8"), ["`dim` must be an integer >= 1", "'8'"]),
    ("count negative", _set(("count",), -1), ["`count` must be an integer >= 0", "-1"]),
    ("anchor_key missing", _drop("anchor_key"), ["missing required key `anchor_key`"]),
    ("anchor_key a list", _set(("anchor_key",), ["a"]), ["`anchor_key` must be a string"]),
]


@pytest.mark.parametrize(("change", "words"), [c[1:] for c in MANIFEST_CASES], ids=[c[0] for c in MANIFEST_CASES])
def test_manifest_error_table(tmp_path: Path, change: Callable, words: list[str]) -> None:
    folder = _saved_index(tmp_path / "my.index")
    (tmp_path / "outside.jsonl").write_text('{"id": 0, "modality": "image"}\n')
    _edit(folder, change)
    for verify in (True, False):
        with pytest.raises(InputFileError) as caught:
            Index.load(folder, verify=verify)
        for word in words:
            assert word in str(caught.value)


def test_symlink_in_the_folder_pointing_outside_is_refused(tmp_path: Path) -> None:
    folder = _saved_index(tmp_path / "my.index")
    manifest = json.loads((folder / "manifest.json").read_text())
    metadata = folder / manifest["metadata"]["file"]
    outside = tmp_path / "outside.jsonl"
    metadata.rename(outside)
    metadata.symlink_to(outside)
    with pytest.raises(InputFileError, match=r"is a symlink to .*outside.jsonl', outside the index folder"):
        Index.load(folder)


# Another process holding the run folder's flock the way `lock_run_folder` takes it (without
# importing torch, so the test stays fast).
LOCK_HOLDER = """
import fcntl, os, sys, time
descriptor = os.open(os.path.join(sys.argv[1], sys.argv[2]), os.O_RDWR | os.O_CREAT)
fcntl.flock(descriptor, fcntl.LOCK_EX)
os.write(descriptor, str(os.getpid()).encode())
print("locked", flush=True)
time.sleep(60)
"""


def _check(folder: Path, **flags: bool) -> bool:
    return check_run_folder(folder, kind="bind", config={"a": 1}, anchor={"k": 1}, resume=flags.get("resume", False),
                            overwrite=flags.get("overwrite", False), differences=lambda old, new: [])


def test_second_trainer_on_one_run_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"kind": "bind", "config": {"a": 1}, "anchor": {"k": 1}}))
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(folder), LOCK_FILE], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=rf"run folder '{folder}' is in use by another anybind process "
                                             rf"\(pid {holder.pid}\)"):
            _check(folder, resume=True)
    finally:
        holder.kill()
        holder.wait()
    assert _check(folder, resume=True) is True  # the lock died with its process


def test_lock_file_does_not_make_a_folder_a_foreign_one(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    start_run_folder(folder, kind="bind", config={"a": 1}, anchor={"k": 1}, resumed=False)
    assert (folder / LOCK_FILE).is_file() and _check(folder, resume=True) is True
    (folder / "run.json").unlink()
    assert _check(folder) is False  # only the lock file is left: an empty folder


def test_overwrite_of_a_run_holding_symlinks(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    start_run_folder(folder, kind="bind", config={"a": 1}, anchor={"k": 1}, resumed=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert _check(folder, overwrite=True) is False
    start_run_folder(folder, kind="bind", config={"a": 1}, anchor={"k": 1}, resumed=False)
    assert not (folder / "linked").exists() and (elsewhere / "keep.txt").read_text() == "keep"


def test_killed_bundle_write_debris_is_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    debris = tmp_path / ".bundle.abc123.tmp"
    debris.mkdir()
    (debris / "weights.safetensors").write_bytes(b"half")
    with staged_folder(target) as temp:
        assert not debris.exists()
        (temp / "bundle.json").write_text("{}")
        with staged_folder(target) as concurrent:  # a live writer's staging folder is never taken
            assert temp.is_dir()
            (concurrent / "bundle.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
