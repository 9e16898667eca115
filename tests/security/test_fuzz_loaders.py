"""Fuzz-style: every modality's loader over malformed files raises only anybind errors, in bounded memory.

A fresh interpreter imports the loaders, loads one valid file of each kind (so lazy imports
happen first), then caps its address space with ``resource.setrlimit(RLIMIT_AS)`` at what it
already maps plus `MEMORY_BUDGET` and walks the whole malformed set (zero-byte, wrong magic,
truncated, huge headers). Any non-anybind exception, and any `MemoryError`, fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MEMORY_BUDGET = 768 * 2**20  # bytes of address space the walk may add to what the warm interpreter maps

RUNNER = r"""
import importlib.util, json, resource, sys, types
from pathlib import Path

spec = importlib.util.spec_from_file_location("malformed_files", sys.argv[1])
malformed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(malformed)
rows = malformed.write_cases(Path(sys.argv[2]))
budget = int(sys.argv[3])

import torch
torch.set_num_threads(1)
from anybind.anchor import ImagePreprocess
from anybind.config import load_named
from anybind.errors import AnybindError
from anybind.modalities.audio.loader import load_audio_batch
from anybind.modalities.audio.preprocess import AudioPreprocess
from anybind.registry import get_modality

anchor = types.SimpleNamespace(image_preprocess=ImagePreprocess(size=32, mean=(0.5,) * 3, std=(0.5,) * 3))
loaders = {}
for name in ("image", "depth", "pointcloud", "audio"):
    cls = get_modality(name)
    modality = cls(cls.resolve_preprocess(None if name != "audio" else "cnn-16k", anchor), anchor)
    loaders[name] = modality.load
fusion = load_named(AudioPreprocess, "preprocess/audio", "clap-48k-fusion", "audio preprocess")
loaders["audio-fusion"] = lambda items: load_audio_batch(items, fusion)

def attempt(load, path):
    try:
        load([path])
        return "ok", True
    except AnybindError as error:
        return f"{type(error).__name__}: {error}", "MemoryError" not in str(error)
    except BaseException as error:
        return f"FOREIGN {type(error).__module__}.{type(error).__name__}: {error}"[:400], False

for modality, path, kind in rows:  # warm-up: every lazy import happens before the limit
    if kind == "valid":
        outcome, _ = attempt(loaders[modality], path)
        assert outcome == "ok", (path, outcome)
mapped = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmSize:"))) * 1024
resource.setrlimit(resource.RLIMIT_AS, (mapped + budget, resource.getrlimit(resource.RLIMIT_AS)[1]))
results = []
for modality, path, kind in rows:
    names = [modality, "audio-fusion"] if modality == "audio" else [modality]
    for name in names:
        outcome, clean = attempt(loaders[name], path)
        results.append({"loader": name, "file": Path(path).name, "kind": kind, "outcome": outcome, "clean": clean})
print(json.dumps(results))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux")
def test_loaders_on_malformed_files_raise_only_anybind_errors_in_bounded_memory(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", RUNNER, str(Path(__file__).with_name("malformed_files.py")),
                           str(folder), str(MEMORY_BUDGET)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) > 80
    unclean = [r for r in results if not r["clean"]]
    assert not unclean, json.dumps(unclean, indent=1)
    must_fail = [r for r in results if r["kind"] in ("zero-byte", "wrong-magic", "huge-header") and r["outcome"] == "ok"]
    assert not must_fail, json.dumps(must_fail, indent=1)
    assert all(r["outcome"] == "ok" for r in results if r["kind"] == "valid")
