"""The decode-once input cache: each input loaded once, batches rebuilt exactly for every built-in
modality (audio windows included, repeated inputs in one batch), hits/misses/invalidation through
the on-disk store, and a store that survives a writer killed mid-write."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from anybind.errors import InputError
from anybind.model import ModalityConfig, build_modality
from anybind.train.input_cache import FeatureStore, FileKeys, InputCache


def test_each_key_is_loaded_once_and_batches_are_rebuilt_in_order() -> None:
    calls: list[list[str]] = []

    def load(keys: list[str]) -> dict[str, torch.Tensor]:
        calls.append(list(keys))
        values = torch.tensor([[float(ord(k))] for k in keys])
        return {"x": values, "mask": values > 98}

    cache = InputCache(load)
    first = cache(["a", "b", "a"])
    second = cache(["c", "b"])
    assert calls == [["a", "b"], ["c"]] and len(cache) == 3
    assert first["x"].flatten().tolist() == [97.0, 98.0, 97.0]
    assert second["mask"].flatten().tolist() == [True, False]


@pytest.mark.parametrize(("loaded", "message"), [
    ([torch.zeros(1, 3), torch.zeros(1, 4)], r"`data.cache_inputs`: items have different shapes"),
    ("not a tensor", r"`data.cache_inputs`: the modality's loader returned str"),
])
def test_unsuitable_loaders_are_refused(loaded: Any, message: str) -> None:
    results = iter(loaded if isinstance(loaded, list) else [loaded])
    cache = InputCache(lambda keys: next(results))
    with pytest.raises(InputError, match=message):
        cache(["a"])
        cache(["b", "a"])


def _write_wav(path: Path, seconds: float, rate: int, frequency: float) -> Path:
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), rate)
    return path


def _inputs(modality: str, folder: Path) -> list[Path]:
    """Three inputs of `modality` of different sizes (audio: 1 to 3 windows)."""
    rng = np.random.default_rng(0)
    if modality == "audio":
        return [_write_wav(folder / f"a{i}.wav", seconds, 16000, 300.0 * (i + 1))
                for i, seconds in enumerate((1.0, 5.0, 3.0))]
    paths = []
    for index in range(3):
        path = folder / f"{modality}{index}.npy"
        if modality == "pointcloud":
            np.save(path, rng.normal(size=(200 + 50 * index, 3)).astype(np.float32))
        else:
            np.save(path, rng.uniform(0.5, 4.0, size=(30 + index, 40)).astype(np.float32))
        paths.append(path)
    return paths


ENCODERS = [("audio", "cnn", {"architecture": "cnn-tiny"}, "cnn-16k"),
            ("audio", "htsat", {}, "clap-48k"),
            ("audio", "htsat", {"fusion": "aff_2d"}, "clap-48k-fusion"),
            ("pointcloud", "projection", {"adapter": True}, None),
            ("depth", "anchor-image", {}, None),
            ("depth", "cnn", {}, None)]


@pytest.mark.parametrize(("modality", "encoder", "args", "preprocess"), ENCODERS,
                         ids=[f"{m}-{e}-{p or 'default'}" for m, e, _, p in ENCODERS])
def test_cached_batches_equal_loaded_batches_for_every_builtin_encoder(
        tiny_model, tmp_path: Path, modality: str, encoder: str, args: dict, preprocess: str | None) -> None:
    """Regression (issue 10, item 1): cached audio rows kept stale per-window `clip_index` values."""
    if encoder == "htsat":  # only its loader layout matters here; an HTS-AT build is too slow for this test
        from anybind.registry import get_modality

        cls = get_modality(modality)
        bound = SimpleNamespace(modality=cls(cls.resolve_preprocess(preprocess, tiny_model.anchor), tiny_model.anchor))
    else:
        bound = build_modality(modality, ModalityConfig(encoder=encoder, encoder_args=args, preprocess=preprocess),
                               tiny_model.anchor, None)
    paths = _inputs(modality, tmp_path)
    order = [paths[1], paths[0], paths[1], paths[2], paths[0]]  # repeats in one batch
    fresh = bound.modality.load(order)
    loads: list[int] = []

    def load(items: list[Path]) -> Any:
        loads.append(len(items))
        return bound.modality.load(items)

    cache = InputCache(load, split=bound.modality.split_batch, join=bound.modality.join_batches, key_of=FileKeys())
    cache(paths[:2])
    cached = cache(order)
    assert loads == [2, 1]  # each input decoded once
    assert fresh.keys() == cached.keys() if isinstance(fresh, dict) else isinstance(cached, torch.Tensor)
    for key in (fresh if isinstance(fresh, dict) else [None]):
        want, got = (fresh, cached) if key is None else (fresh[key], cached[key])
        torch.testing.assert_close(got, want, msg=f"{modality}/{encoder} `{key}`")
    if encoder == "htsat":
        return
    encoder_module = bound.encoder.eval()
    with torch.no_grad():
        front = InputCache(lambda items: encoder_module.front_end(bound.modality.load(items)),
                           split=bound.modality.split_batch, join=bound.modality.join_batches)
        torch.testing.assert_close(encoder_module(front(order)), encoder_module(fresh), atol=1e-4, rtol=1e-4)


def _audio_recipe(folder: Path, manifest: Path, model: Path, **data: Any) -> dict[str, Any]:
    return {"modality": "audio", "encoder": "cnn", "encoder_args": {"architecture": "cnn-tiny"},
            "preprocess": "cnn-16k", "model": str(model), "output_dir": str(folder / "run"),
            "data": {"manifest": str(manifest), "val_fraction": 0.0, "anchor_cache_dir": str(folder / "anchors"),
                     "input_cache_dir": str(folder / "inputs"), **data},
            "train": {"batch_size": 8, "steps": 2, "device": "cpu", "num_threads": 1, "precision": "fp32"},
            "eval": {"every_steps": 0}, "checkpoint": {"every_steps": 0, "keep_last": 1},
            "log": {"every_steps": 1, "tensorboard": False, "progress": False}}


@pytest.fixture(scope="module")
def audio_pairs(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """6 clips (1-5 s, so 1-3 windows), each paired with 2 images: 12 rows."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("audio-pairs")
    rng = np.random.default_rng(1)
    lines = ["input,image"]
    for index in range(6):
        _write_wav(folder / f"c{index}.wav", 1.0 + 0.8 * index, 16000, 200.0 + 150 * index)
        for frame in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"c{index}-{frame}.png")
            lines.append(f"c{index}.wav,c{index}-{frame}.png")
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    return folder / "pairs.csv"


def _open_run(recipe: dict[str, Any], base_model: Any):  # type: ignore[no-untyped-def]
    from anybind.train.config import load_bind_config
    from anybind.train.loop import BindingRun

    run = BindingRun(load_bind_config(recipe), torch.device("cpu"), base_model)
    run.open(resume=False, overwrite=True)
    return run


def test_store_hits_misses_and_invalidation(audio_pairs: Path, base_model, tiny_anchor_file, tmp_path: Path) -> None:
    first = _open_run(_audio_recipe(tmp_path, audio_pairs, tiny_anchor_file), base_model)
    assert (first.input_cache.loaded, first.input_cache.from_store) == (6, 0)  # cold: every clip decoded once
    first.train(None)  # clips paired with several images, several windows each: trains without a shape error
    warm = _open_run(_audio_recipe(tmp_path, audio_pairs, tiny_anchor_file), base_model)
    assert (warm.input_cache.loaded, warm.input_cache.from_store) == (0, 6)  # another run reads the store
    other_tower = _audio_recipe(tmp_path, audio_pairs, tiny_anchor_file)
    other_tower["encoder_args"] = {"architecture": "cnn-small", "dropout": 0.3}  # the log-mels do not change
    reused = _open_run(other_tower, base_model)
    assert (reused.input_cache.loaded, reused.input_cache.from_store) == (0, 6)
    _write_wav(audio_pairs.parent / "c0.wav", 1.0, 16000, 999.0)  # an edited file is a miss
    edited = _open_run(_audio_recipe(tmp_path, audio_pairs, tiny_anchor_file), base_model)
    assert (edited.input_cache.loaded, edited.input_cache.from_store) == (1, 5)
    changed = _audio_recipe(tmp_path, audio_pairs, tiny_anchor_file)
    changed["preprocess"] = {"sample_rate": 16000, "clip_seconds": 1.0, "mel_bins": 32, "window_size": 400,
                             "hop_size": 160, "fmin": 20, "fmax": 8000}
    other = _open_run(changed, base_model)  # a changed preprocess config is a different store
    assert (other.input_cache.loaded, other.input_cache.from_store) == (6, 0)
    assert other.input_cache.store.folder != first.input_cache.store.folder
    uncached = _open_run(_audio_recipe(tmp_path, audio_pairs, tiny_anchor_file, cache_inputs=False), base_model)
    assert uncached.input_cache is None
    for micro_step in range(3):  # the cached log-mels give the batches the loader + front end give
        (a, _), (b, _) = warm.dataset[micro_step], uncached.dataset[micro_step]
        torch.testing.assert_close(a["log_mel"], warm.encoder.front_end(b)["log_mel"])
        assert a["clip_index"].tolist() == b["clip_index"].tolist()


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys, torch
    import anybind.atomic
    from anybind.train.input_cache import FeatureStore
    store = FeatureStore(sys.argv[1])
    store.put({"kept": torch.ones(1, 4)})
    real_fsync = os.fsync
    def die(descriptor):  # killed after the data bytes are written, before any rename
        os.kill(os.getpid(), signal.SIGKILL)
    anybind.atomic.os.fsync = die
    store.put({"lost": torch.zeros(1, 1000)})
""")


def test_store_survives_a_killed_write_and_ignores_corrupt_chunks(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(folder)], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    assert done.returncode == -9, done.stderr
    assert list(folder.glob(".*.tmp")), "the killed write should have left its temp file"
    store = FeatureStore(folder)
    assert "kept" in store and "lost" not in store and len(store) == 1
    torch.testing.assert_close(store.get("kept"), torch.ones(1, 4))
    store.put({"again": {"x": torch.arange(3.0)[None]}})
    (chunk,) = [p for p in folder.glob("chunk-*.safetensors") if "kept" in p.with_suffix(".json").read_text()]
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF  # flip a bit of the tensor data: the sha256 check must refuse the chunk
    chunk.write_bytes(bytes(data))
    reopened = FeatureStore(folder)
    assert "kept" not in reopened and "again" in reopened
    torch.testing.assert_close(reopened.get("again")["x"], torch.arange(3.0)[None])
