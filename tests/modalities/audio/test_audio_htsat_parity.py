"""anybind's htsat encoder vs laion_clap's own audio path on the same random-init HTSAT-tiny weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from anybind.config import load_named
from anybind.modalities.audio.preprocess import AudioPreprocess, clap_fusion_input, quantize_int16, window_starts

PARITY_ATOL = 1e-5
INNER_FLAG = "ANYBIND_AUDIO_FRESH_PROCESS"


def _noise(seconds: float, seed: int, rate: int = 48000) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * rate)) * 0.2).astype(np.float32)


def test_htsat_embedding_equals_laion_clap_audio_path(clap_reference, clap_model) -> None:
    # A short clip (repeat-padded, as CLAP's repeatpad) and a long one: anybind averages evenly
    # spaced 10 s windows, so its reference is laion_clap's embeddings of those windows averaged.
    short, long = _noise(3.0, 0), _noise(12.0, 1)
    starts = window_starts(long.shape[0], 480000, 6)
    assert starts == [0, 96000]
    reference = clap_reference.embed([short] + [long[s:s + 480000] for s in starts])
    expected = torch.cat([reference[:1], torch.nn.functional.normalize(reference[1:].mean(0, keepdim=True), dim=-1)])
    got = clap_model.embed("audio", [short, long], sample_rate=48000).as_subclass(torch.Tensor)
    difference = (got - expected).abs().max().item()
    print(f"htsat parity max abs diff vs laion_clap: {difference:.3g}")
    assert got.shape == (2, 512)
    assert difference < PARITY_ATOL


@pytest.mark.parametrize("seconds", [4.0, 14.0])
def test_fusion_input_equals_laion_clap(clap_reference, monkeypatch, seconds: float) -> None:
    # CLAP picks fusion chunks at random; make it pick the middle of each third, as anybind does.
    monkeypatch.setattr(np.random, "choice", lambda options: options[len(options) // 2])
    preprocess = load_named(AudioPreprocess, "preprocess/audio", "clap-48k-fusion", "test")
    clip = quantize_int16(torch.from_numpy(_noise(seconds, 3)))
    expected = clap_reference.functions["get_audio_features"](
        {}, clip, 480000, "fusion", "repeatpad", clap_reference.audio_cfg)
    mel, longer = clap_fusion_input(clip, preprocess)
    assert longer == bool(expected["longer"].item()) == (seconds > 10)
    assert mel.shape == expected["mel_fusion"].shape == (4, 1001, 64)
    assert (mel - expected["mel_fusion"]).abs().max().item() < 1e-4


def test_import_reaches_htsat_without_network() -> None:
    """Run `test_fresh_process_imports_htsat_offline` in a new interpreter: clean sys.modules, sockets blocked."""
    env = {**os.environ, INNER_FLAG: "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
         f"{Path(__file__)}::test_fresh_process_imports_htsat_offline"],
        env=env, cwd=Path(__file__).parents[3], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout


@pytest.mark.skipif(os.environ.get(INNER_FLAG) != "1", reason="runs only inside test_import_reaches_htsat_without_network")
def test_fresh_process_imports_htsat_offline(block_sockets) -> None:
    assert not any(name == "laion_clap" or name.startswith("laion_clap.") for name in sys.modules)
    from anybind.modalities.audio.laion_source import import_clap_module

    htsat = import_clap_module("htsat")
    assert hasattr(htsat, "HTSAT_Swin_Transformer")
    assert not any(name == "laion_clap" or name.startswith(("laion_clap.", "transformers")) for name in sys.modules)
