"""The audio loader: PCM scaling, mono mix, resampling, clip policy, file formats, bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from anybind.config import load_named
from anybind.modalities.audio.loader import load_audio_batch, resample, to_mono_float
from anybind.modalities.audio.preprocess import AudioPreprocess, fill_clip, quantize_int16, window_starts


def _preprocess(name: str) -> AudioPreprocess:
    return load_named(AudioPreprocess, "preprocess/audio", name, "test")


@pytest.mark.parametrize(("samples", "expected"), [
    (np.array([32767, -32768, 0], dtype=np.int16), [32767 / 32768, -1.0, 0.0]),
    (np.array([2**31 - 1, -(2**31)], dtype=np.int32), [1.0, -1.0]),
    (np.array([255, 0, 128], dtype=np.uint8), [127 / 128, -1.0, 0.0]),
    (np.array([0.5, -0.25], dtype=np.float64), [0.5, -0.25]),
    (torch.tensor([0.5, -0.25], dtype=torch.bfloat16), [0.5, -0.25]),
])
def test_integer_pcm_is_scaled_to_unit_range(samples, expected) -> None:
    out = to_mono_float(samples, "inputs[0]")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_channels_are_averaged_not_dropped() -> None:
    stereo = np.stack([np.ones(100, np.float32), -np.ones(100, np.float32) * 0.5])
    np.testing.assert_allclose(to_mono_float(stereo, "x"), 0.25)
    eight = np.arange(8, dtype=np.float32)[:, None].repeat(50, axis=1) / 10
    np.testing.assert_allclose(to_mono_float(eight, "x"), 0.35, rtol=1e-6)


def test_resampling_keeps_pitch_and_duration() -> None:
    rate = 8000
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    out = resample(tone, rate, 16000)
    assert out.shape == (16000,)
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * 16000 / out.shape[0]
    assert abs(peak_hz - 440) <= 1


@pytest.mark.parametrize(("length", "window", "most", "expected"), [
    (5, 10, 6, [0]),
    (10, 10, 6, [0]),
    (25, 10, 6, [0, 8, 15]),
    (1000, 10, 4, [0, 330, 660, 990]),
    (15, 10, 1, [2]),
])
def test_window_starts_are_evenly_spaced(length, window, most, expected) -> None:
    assert window_starts(length, window, most) == expected


def test_repeatpad_and_pad() -> None:
    clip = torch.tensor([1.0, 2.0, 3.0])
    assert fill_clip(clip, 8, "repeatpad").tolist() == [1, 2, 3, 1, 2, 3, 0, 0]
    assert fill_clip(clip, 5, "pad").tolist() == [1, 2, 3, 0, 0]


def test_quantization_matches_clap_int16_round_trip() -> None:
    x = torch.tensor([0.123456, -0.99999, 1.5, -2.0])
    expected = (np.clip(x.numpy(), -1, 1) * 32767.0).astype(np.int16).astype(np.float32) / 32767.0
    assert torch.equal(quantize_int16(x), torch.from_numpy(expected))


def test_batch_of_windows_carries_the_clip_index() -> None:
    preprocess = _preprocess("cnn-16k")  # 2 s windows at 16 kHz, at most 4
    clips = [np.zeros(8000, np.float32), np.ones(16000 * 7, np.float32) * 0.1, np.zeros(32000, np.float32)]
    batch = load_audio_batch(clips, preprocess, sample_rate=16000)
    assert batch["waveform"].shape == (1 + 4 + 1, 32000)
    assert batch["clip_index"].tolist() == [0, 1, 1, 1, 1, 2]


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"), ("WAV", "FLOAT")])
def test_files_read_like_arrays(tmp_path: Path, fmt: str, subtype: str) -> None:
    rate = 22050
    stereo = (np.random.default_rng(0).standard_normal((rate, 2)) * 0.1).astype(np.float32)
    path = tmp_path / f"clip.{fmt.lower()}"
    soundfile.write(path, stereo, rate, format=fmt, subtype=subtype)
    preprocess = _preprocess("cnn-16k")
    from_file = load_audio_batch([str(path)], preprocess)["waveform"]
    from_array = load_audio_batch([stereo.T.copy()], preprocess, sample_rate=rate)["waveform"]
    assert from_file.shape == from_array.shape == (1, 32000)
    if subtype != "VORBIS":  # lossy: only shapes compare
        assert (from_file - from_array).abs().max().item() < 1e-3


def _write_long_file(path: Path, seconds: int, rate: int) -> None:
    block = (np.random.default_rng(0).standard_normal(rate * 60) * 3000).astype(np.int16)
    with soundfile.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as handle:
        for _ in range(seconds // 60):
            handle.write(block)


def test_one_hour_file_is_read_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "hour.wav"
    _write_long_file(path, 3600, 8000)
    preprocess = _preprocess("clap-48k")
    whole_at_48k = 3600 * 48000 * 4  # bytes a float32 copy of the resampled file would take (691 MB)
    tracemalloc.start()
    try:
        batch = load_audio_batch([path], preprocess)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert batch["waveform"].shape == (6, 480000)
    assert torch.isfinite(batch["waveform"]).all()
    assert peak < 64 * 2**20 < whole_at_48k / 10
