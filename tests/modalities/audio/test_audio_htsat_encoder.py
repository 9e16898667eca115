"""The htsat encoder's anchor head, architecture configs and config errors (on a miniature HTS-AT)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import anybind
from anybind.errors import ConfigError
from anybind.model import ModalityConfig

# A miniature HTS-AT: the real layout (256x256 folded mel, 4 stages, windows of 8) with tiny widths.
MINI = {"name": "mini", "embed_dim": 8, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 2]}


@pytest.fixture(scope="module")
def mini_model(model_config_for: Any) -> Any:
    audio = {"encoder": "htsat", "encoder_args": {"architecture": MINI, "head_hidden": 16}}
    return anybind.load(model_config_for(audio), device="cpu")


def _clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(48000 * s) * 0.1).astype(np.float32) for s in (2, 11)]


@pytest.mark.parametrize("head_input", ["clap", "backbone"])
def test_head_maps_into_the_anchor(mini_model: Any, head_input: str) -> None:
    if head_input != mini_model.encoder("audio").config.head_input:
        mini_model.add_modality("audio", ModalityConfig(encoder="htsat", encoder_args={
            "architecture": MINI, "head_input": head_input}))
    vectors = mini_model.embed("audio", _clips(), sample_rate=48000)
    assert vectors.shape == (2, mini_model.dim)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(2))
    encoder = mini_model.encoder("audio")
    batch = mini_model.bound("audio").modality.load(_clips(), sample_rate=48000)
    assert batch["clip_index"].tolist() == [0, 1, 1]
    with torch.inference_mode():
        clap = encoder.clap_embedding(batch)
    assert clap.shape == (2, 512)


def test_lean_inference_equals_laion_clap_forward(mini_model: Any) -> None:
    encoder = mini_model.encoder("audio")
    batch = mini_model.bound("audio").modality.load(_clips()[:1], sample_rate=48000)
    with torch.inference_mode():
        ours = encoder.window_features(batch)
        theirs = encoder.audio_branch({"waveform": batch["waveform"]}, device="cpu")["embedding"]
    assert (ours - theirs).abs().max().item() < 1e-5


CONFIG_ERRORS = [
    ({"encoder_args": {"architecture": MINI, "output": "clap"}},
     r"`encoder_args.output`: 'clap' returns 512-d CLAP embeddings but the anchor has dim 64"),
    ({"encoder_args": {"architecture": MINI, "fusion": "aff_2d"}},
     r"`preprocess`: the htsat encoder uses CLAP fusion .* long_clips='windows'; use clap-48k-fusion"),
    ({"encoder_args": {"architecture": MINI}, "preprocess": "imagebind-16k"},  # was a bare KeyError at embed time
     r"`preprocess`: the htsat encoder reads CLAP windows \(clap-48k\) .* long_clips='spread'"),
    ({"encoder_args": {"architecture": MINI, "fusion": "magic"}}, r"`encoder_args.fusion`: expected one of aff_2d"),
    ({"encoder_args": {"architecture": "htsat-huge"}}, r"unknown htsat architecture 'htsat-huge'"),
    ({"encoder_args": {"architecture": {**MINI, "depth": 3}}}, r"unknown key\(s\) 'depth'"),
    ({"encoder_args": {"size": "tiny"}}, r"unknown key\(s\) 'size'"),
    ({"preprocess": {"sample_rate": 48000, "clip_seconds": 10.0, "mel_bins": 64, "window_size": 1024,
                     "hop_size": 480, "fmin": 50, "fmax": 30000}}, r"expected 0 <= `fmin` < `fmax` <= sample_rate / 2"),
]


@pytest.mark.parametrize(("entry", "message"), CONFIG_ERRORS)
def test_config_errors(mini_model: Any, entry: dict, message: str) -> None:
    with pytest.raises((ConfigError, anybind.UnknownNameError), match=message):
        mini_model.add_modality("audio", ModalityConfig(encoder="htsat", **entry))
