"""Files and folders anybind writes get the modes the umask gives ordinary files (not 0600/0700)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from anybind.atomic import atomic_save_safetensors, atomic_write_bytes, atomic_write_json, staged_folder
from anybind.train.bundle import write_bundle


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_get_umask_modes(tmp_path: Path, umask: int) -> None:
    written = [atomic_write_bytes(tmp_path / "a.bin", b"x"), atomic_write_json(tmp_path / "sub" / "b.json", {}),
               atomic_save_safetensors(tmp_path / "c.safetensors", {"w": torch.zeros(2)})]
    for path in written:
        assert mode(path) == 0o666 & ~umask, path


def test_staged_folder_gets_umask_mode(tmp_path: Path, umask: int) -> None:
    with staged_folder(tmp_path / "folder") as temp:
        atomic_write_bytes(temp / "inside.txt", b"x")
    assert mode(tmp_path / "folder") == 0o777 & ~umask
    assert mode(tmp_path / "folder" / "inside.txt") == 0o666 & ~umask


def test_bundle_is_readable_by_others_under_umask(tmp_path: Path, umask: int) -> None:
    folder = write_bundle(tmp_path / "bundle", anchor_spec={"kind": "openclip", "model": "tiny"},
                          modalities={"audio": ({"encoder": "cnn"}, {"w": torch.ones(3)})})
    for path in [folder, *folder.rglob("*")]:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert mode(path) == expected, path
