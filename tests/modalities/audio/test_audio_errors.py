"""Bad audio inputs raise anybind errors naming the argument; odd but valid inputs embed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch

import anybind
from anybind.errors import InputError, InputFileError

RATE = 16000


def _noise(seconds: float, channels: int = 1, rate: int = RATE) -> np.ndarray:
    data = np.random.default_rng(0).standard_normal((channels, int(seconds * rate))) * 0.1
    return data.astype(np.float32)[0] if channels == 1 else data.astype(np.float32)


def _wav(tmp: Path, data: np.ndarray, name: str = "x.wav", **kwargs: Any) -> str:
    path = tmp / name
    soundfile.write(path, data, RATE, **kwargs)
    return str(path)


def _truncated(tmp: Path, fmt: str) -> str:
    good = Path(_wav(tmp, _noise(1.0), f"good.{fmt}"))
    bad = tmp / f"truncated.{fmt}"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return str(bad)


BAD_INPUTS: list[tuple[str, Callable[[Path], tuple[Any, dict]], type, str]] = [
    ("missing file", lambda t: ([str(t / "nope.wav")], {}), InputFileError, r"`inputs\[0\]`.*nope\.wav.*does not exist"),
    ("directory", lambda t: ([str(t)], {}), InputFileError, r"`inputs\[0\]`: expected an audio file, got a directory"),
    ("corrupt file", lambda t: ([str((t / "c.wav").write_bytes(b"RIFF\x00\x01garbage" * 50) and t / "c.wav")], {}),
     InputFileError, r"`inputs\[0\]`.*c\.wav.*not a readable audio file"),
    ("truncated wav", lambda t: ([_truncated(t, "wav")], {}), InputFileError,
     r"`inputs\[0\]`.*truncated\.wav.*is truncated: its header declares 32000 data bytes but the file holds"),
    ("truncated flac", lambda t: ([_truncated(t, "flac")], {}), InputFileError,
     r"`inputs\[0\]`.*truncated\.flac.*(not a readable audio file|corrupt or truncated)"),
    ("non-audio file", lambda t: ([str((t / "notes.txt").write_text("hello") and t / "notes.txt")], {}),
     InputFileError, r"`inputs\[0\]`.*notes\.txt.*not a readable audio file \(expected wav/flac/ogg"),
    ("zero-length file", lambda t: ([_wav(t, np.zeros(0, np.float32))], {}), InputFileError,
     r"`inputs\[0\]`.*holds no samples \(zero-length audio\)"),
    ("zero-length array", lambda t: ([np.zeros(0, np.float32)], {"sample_rate": RATE}), InputError,
     r"`inputs\[0\]`: expected at least one audio sample, got shape \(0,\)"),
    ("NaN samples", lambda t: ([np.array([0.0, np.nan, 0.1], np.float32)], {"sample_rate": RATE}), InputError,
     r"`inputs\[0\]`: expected finite audio samples, got 1 NaN/inf value"),
    ("inf samples", lambda t: ([torch.tensor([0.0, float("inf"), -float("inf")])], {"sample_rate": RATE}), InputError,
     r"`inputs\[0\]`: expected finite audio samples, got 2 NaN/inf value"),
    ("NaN in a float wav", lambda t: ([_wav(t, np.array([0.0, np.nan] * 100, np.float32), subtype="FLOAT")], {}),
     InputError, r"`inputs\[0\]`: expected finite audio samples"),
    ("array without sample_rate", lambda t: ([_noise(0.5)], {}), InputError,
     r"`sample_rate`: audio arrays need an explicit sample rate"),
    ("zero sample rate", lambda t: ([_noise(0.5)], {"sample_rate": 0}), InputError,
     r"`sample_rate`: expected a positive integer sample rate in Hz, got 0"),
    ("negative sample rate", lambda t: ([_noise(0.5)], {"sample_rate": -16000}), InputError,
     r"`sample_rate`: expected a positive integer sample rate in Hz, got -16000"),
    ("fractional sample rate", lambda t: ([_noise(0.5)], {"sample_rate": 16000.5}), InputError,
     r"`sample_rate`: expected a positive integer sample rate in Hz, got 16000\.5"),
    ("string sample rate", lambda t: ([_noise(0.5)], {"sample_rate": "16k"}), InputError,
     r"`sample_rate`: expected a positive integer sample rate in Hz, got '16k'"),
    ("no small channel axis", lambda t: ([np.zeros((100, 200), np.float32)], {"sample_rate": RATE}), InputError,
     r"`inputs\[0\]`: expected one clip with at most 64 channels on its first or last axis, got shape \(100, 200\)"),
    ("3-D array", lambda t: ([np.zeros((2, 2, 100), np.float32)], {"sample_rate": RATE}), InputError,
     r"`inputs\[0\]`: expected a \[samples\], \[channels, samples\] or \[samples, channels\] array, got shape "
     r"\(2, 2, 100\)"),
    ("complex samples", lambda t: ([np.zeros(100, np.complex64)], {"sample_rate": RATE}), InputError,
     r"`inputs\[0\]`: expected float or integer PCM samples, got dtype complex64"),
    ("not audio at all", lambda t: ([{"wave": 1}], {}), InputError,
     r"`inputs\[0\]`: expected an audio file path, a \[samples\] / \[channels, samples\] / \[samples, channels\] array"),
    ("too short to resample", lambda t: ([np.array([0.5], np.float32)], {"sample_rate": 96000}), InputError,
     r"`inputs\[0\]`: 1 sample\(s\) at 96000 Hz is shorter than one sample at the encoder's 16000 Hz"),
    ("unknown option", lambda t: ([_noise(0.5)], {"sample_rate": RATE, "rate": 3}), InputError,
     r"audio inputs take only the option `sample_rate`, got rate"),
]


@pytest.mark.parametrize(("make", "error", "message"), [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_audio_input(audio_model: Any, tmp_path: Path, make: Callable, error: type, message: str) -> None:
    inputs, options = make(tmp_path)
    with pytest.raises(error, match=message):
        audio_model.embed("audio", inputs, **options)


GOOD_INPUTS: list[tuple[str, Callable[[Path], tuple[Any, dict]]]] = [
    ("8 channels", lambda t: ([_noise(1.0, channels=8)], {"sample_rate": RATE})),
    ("8 kHz", lambda t: ([_noise(1.0, rate=8000)], {"sample_rate": 8000})),
    ("8 kHz file", lambda t: ([_wav(t, _noise(1.5, rate=8000))], {})),
    ("silence", lambda t: ([np.zeros(RATE, np.float32)], {"sample_rate": RATE})),
    ("int16 array", lambda t: ([(np.random.default_rng(1).standard_normal(RATE) * 3000).astype(np.int16)],
                               {"sample_rate": RATE})),
    ("[N, T] batch", lambda t: (np.zeros((3, 4000), np.float32) + 0.01, {"sample_rate": RATE, "batched": True})),
    ("samples-first clip in a list", lambda t: ([_noise(0.5, 2).T.copy()], {"sample_rate": RATE})),
    ("one sample", lambda t: ([np.array([0.5], np.float32)], {"sample_rate": RATE})),
]


@pytest.mark.parametrize("make", [case[1] for case in GOOD_INPUTS], ids=[case[0] for case in GOOD_INPUTS])
def test_valid_audio_input_embeds(audio_model: Any, tmp_path: Path, make: Callable) -> None:
    inputs, options = make(tmp_path)
    vectors = audio_model.embed("audio", inputs, **options)
    count = len(inputs)
    assert vectors.shape == (count, audio_model.dim)
    assert torch.isfinite(vectors).all()
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(count))


def test_one_hour_file_embeds(audio_model: Any, tmp_path: Path) -> None:
    path = tmp_path / "hour.wav"
    block = (np.random.default_rng(0).standard_normal(8000 * 60) * 1000).astype(np.int16)
    with soundfile.SoundFile(path, "w", samplerate=8000, channels=1, subtype="PCM_16") as handle:
        for _ in range(60):
            handle.write(block)
    first = audio_model.embed("audio", [str(path)])
    again = audio_model.embed("audio", str(path))
    assert first.shape == (1, audio_model.dim)
    assert torch.equal(first, again)  # deterministic windows, no random crop


def test_tiny_preset_includes_audio(tiny_model: Any) -> None:
    assert "audio" in tiny_model.modalities
    vectors = tiny_model.embed("audio", [_noise(1.2)], sample_rate=RATE)
    assert vectors.shape == (1, tiny_model.dim)
