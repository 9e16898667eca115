"""Index storage: round trips, memory mapping, atomic re-saves, and a save killed mid-write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anybind import AnchorIdentity, Index

IDENTITY = AnchorIdentity(kind="openclip", config="tiny", tag=None, weights_sha256="ab" * 32)


def make_index(count: int, seed: int = 0) -> Index:
    vectors = F.normalize(torch.randn(count, 16, generator=torch.Generator().manual_seed(seed)), dim=1)
    index = Index(IDENTITY, 16, backend="fast", backend_options={"candidates": 20})
    index.add(vectors[: count // 2], modality="image", metadata=[{"source": f"{i}.png"} for i in range(count // 2)])
    index.add(vectors[count // 2:], ids=[f"t{i}" for i in range(count - count // 2)], modality="text")
    return index


def test_round_trip_mmap_and_in_memory(tmp_path: Path) -> None:
    index = make_index(50)
    index.save(tmp_path / "a.index")
    manifest = json.loads((tmp_path / "a.index" / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["count"] == 50 and manifest["anchor"] == IDENTITY.to_dict()
    for mmap in (True, False):
        loaded = Index.load(tmp_path / "a.index", mmap=mmap)
        assert isinstance(loaded._store.segments[0], np.memmap) == mmap
        assert loaded.anchor_key == IDENTITY.key and loaded.backend == "fast"
        assert loaded.backend_options == {"candidates": 20} and loaded.ids == index.ids
        assert loaded.metadata(3) == {"id": 3, "modality": "image", "source": "3.png"}
        torch.testing.assert_close(loaded.vectors(), index.vectors())
        assert loaded.search(index.vectors()[:4], k=3).ids == index.search(index.vectors()[:4], k=3).ids
        assert loaded.add(index.vectors()[:1], modality="audio") == [25]  # next auto id survives the round trip


def test_resave_replaces_old_generation(tmp_path: Path) -> None:
    path = tmp_path / "a.index"
    make_index(20).save(path)
    loaded = Index.load(path)  # memory-mapped from the files about to be replaced
    loaded.remove([0, 1])
    loaded.save(path)
    assert len(Index.load(path)) == 18
    assert len(list(path.glob("vectors-*.npy"))) == 1 and len(list(path.glob("metadata-*.jsonl"))) == 1


SAVER = textwrap.dedent("""
    import sys, time
    import torch
    import anybind.index.storage as storage
    from anybind import Index

    real_fsync = storage.fsync_file
    def slow_fsync(handle):
        real_fsync(handle)
        if "vectors-" in handle.name:  # a shard is on disk, the manifest not yet swapped
            open(sys.argv[2], "w").close()
            time.sleep(60)
    storage.fsync_file = slow_fsync
    index = Index.load(sys.argv[1], mmap=False)
    index.add(torch.randn(500, 16), modality="audio")
    index.save(sys.argv[1])
""")


def test_killed_save_leaves_the_old_index_intact(tmp_path: Path) -> None:
    path, marker = tmp_path / "a.index", tmp_path / "writing"
    make_index(30).save(path)
    before = sorted(p.name for p in path.iterdir())
    process = subprocess.Popen([sys.executable, "-c", SAVER, str(path), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None and time.monotonic() < deadline, "saver exited before writing"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert len(list(path.iterdir())) > len(before)  # the half-done save left a shard behind
    survivor = Index.load(path)
    assert len(survivor) == 30 and survivor.modality_counts() == {"image": 15, "text": 15}
    make_index(10).save(path)  # the next save cleans the debris
    manifest = json.loads((path / "manifest.json").read_text())
    named = {entry["file"] for entry in [*manifest["vectors"], manifest["metadata"]]}
    assert {p.name for p in path.iterdir()} == named | {"manifest.json", ".lock"}  # no shard of the killed save


def test_concurrent_saves_take_turns(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "a.index"
    indexes = [make_index(20 + 2 * i, seed=i) for i in range(4)]
    threads = [threading.Thread(target=index.save, args=(path,)) for index in indexes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loaded = Index.load(path)  # checksums pass: one complete save won
    assert len(loaded) in {len(index) for index in indexes}
    assert len(list(path.glob("metadata-*.jsonl"))) == 1
