"""Audio preprocessing constants (`AudioPreprocess`, read from ``configs/preprocess/audio/``) and
the clip policy: repeat-padding short clips, evenly spaced windows over long ones, and CLAP's
int16 quantization and fusion input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from anybind.errors import ConfigError


@dataclass(frozen=True)
class AudioPreprocess:
    """How an audio encoder wants its waveform (values live in ``configs/preprocess/audio/*.yaml``)."""

    sample_rate: int  # Hz every input is resampled to
    clip_seconds: float  # length of one encoder input window, seconds
    mel_bins: int  # mel filterbank size
    window_size: int  # STFT window and FFT size, samples
    hop_size: int  # STFT hop, samples
    fmin: float  # lowest mel filter edge, Hz
    fmax: float  # highest mel filter edge, Hz
    short_clips: Literal["repeatpad", "pad"] = "repeatpad"  # CLAP's repeatpad: whole repeats, then zeros
    # "windows": average of evenly spaced windows; "fusion": CLAP fusion; "spread": exactly `max_windows`
    # clips spread as ImageBind does (see `anybind.modalities.audio.clip_spread`).
    long_clips: Literal["windows", "fusion", "spread"] = "windows"
    max_windows: int = 6  # at most this many windows are read from a long clip ("spread": exactly this many)
    quantize_int16: bool = False  # round-trip through int16 as LAION-CLAP does before its model
    # Longest clip (seconds) the fusion input reads and resamples whole (memory grows with it:
    # ~1 MB per second at 48 kHz through the mel). Windowed configs read any length in windows.
    max_seconds: float = 600.0
    channels: Literal["mean", "first"] = "mean"  # mix channels down, or keep channel 0 only (ImageBind)
    resampler: Literal["soxr", "torchaudio"] = "soxr"  # torchaudio: its default sinc resampler (ImageBind)
    norm_mean: float = 0.0  # log-mel normalization of Kaldi-fbank front ends: (x - norm_mean) / norm_std
    norm_std: float = 1.0
    target_frames: int | None = None  # Kaldi-fbank front ends zero-pad or cut the log-mel to this many frames
    version: int = 1

    def __post_init__(self) -> None:
        from anybind.errors import ConfigError

        for name in ("sample_rate", "mel_bins", "window_size", "hop_size", "max_windows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"audio preprocess: `{name}` must be positive, got {getattr(self, name)}")
        if not self.max_seconds >= self.clip_seconds:
            raise ConfigError(f"audio preprocess: `max_seconds` must be at least `clip_seconds`, got {self.max_seconds}")
        if not self.clip_seconds > 0:
            raise ConfigError(f"audio preprocess: `clip_seconds` must be positive, got {self.clip_seconds}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(f"audio preprocess: expected 0 <= `fmin` < `fmax` <= sample_rate / 2, "
                              f"got fmin={self.fmin}, fmax={self.fmax}, sample_rate={self.sample_rate}")

    @property
    def clip_samples(self) -> int:
        """Samples in one encoder window at `sample_rate` (480000 for CLAP)."""
        return int(round(self.sample_rate * self.clip_seconds))


def windowed_preprocess(preprocess: object, encoder: str, example: str) -> AudioPreprocess:
    """`preprocess` if it is an `AudioPreprocess` with ``long_clips: windows`` (what encoders that average
    ``[W, samples]`` windows per clip need); else a `ConfigError` naming `encoder` and an `example` config."""
    if not isinstance(preprocess, AudioPreprocess) or preprocess.long_clips != "windows":
        raise ConfigError(f"the {encoder} audio encoder needs an audio preprocess config with long_clips: windows "
                          f"(e.g. {example}), got {preprocess!r}")
    return preprocess


def window_starts(length: int, window: int, max_windows: int) -> list[int]:
    """Start offsets of evenly spaced windows of `window` samples over `length` samples.

    A clip no longer than one window has the single start 0. A longer clip gets
    ``min(max_windows, ceil(length / window))`` windows from its start to its end (deterministic).
    """
    if length <= window:
        return [0]
    count = min(max_windows, math.ceil(length / window))
    if count == 1:
        return [(length - window) // 2]
    return [int(round(v)) for v in np.linspace(0, length - window, count)]


def fill_clip(waveform: torch.Tensor, samples: int, mode: str) -> torch.Tensor:
    """``[T]`` with ``T <= samples`` -> ``[samples]``: CLAP's repeatpad (whole repeats, then zeros) or zero pad."""
    length = waveform.shape[-1]
    if length == samples:
        return waveform
    if mode == "repeatpad":
        waveform = waveform.repeat(samples // length)
    return torch.nn.functional.pad(waveform, (0, samples - waveform.shape[-1]))


def quantize_int16(waveform: torch.Tensor) -> torch.Tensor:
    """Round-trip float audio through int16 as LAION-CLAP does: clip to [-1, 1], x32767, truncate, /32767."""
    scaled = waveform.clamp(-1.0, 1.0) * 32767.0
    return scaled.to(torch.int16).to(torch.float32) / 32767.0


MEL_BLOCK_FRAMES = 4096  # mel frames computed per STFT call for long clips (bounds the complex STFT buffer)


def _mel_transform(preprocess: AudioPreprocess, center: bool) -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate=preprocess.sample_rate, n_fft=preprocess.window_size, win_length=preprocess.window_size,
        hop_length=preprocess.hop_size, center=center, pad_mode="reflect", power=2.0, norm=None,
        n_mels=preprocess.mel_bins, f_min=float(preprocess.fmin), f_max=float(preprocess.fmax))


def _power_to_db(power: torch.Tensor) -> torch.Tensor:
    import torchaudio

    return torchaudio.functional.amplitude_to_DB(power, 10.0, 1e-10, 0.0, None)


def quantize_int16_(waveform: torch.Tensor) -> torch.Tensor:
    """`quantize_int16` in place on a float32 tensor (no copies of a long clip); returns `waveform`.

    Truncating the scaled float toward zero is what the int16 cast does for values in range.
    """
    return waveform.clamp_(-1.0, 1.0).mul_(32767.0).trunc_().div_(32767.0)


def clap_log_mel(waveform: torch.Tensor, preprocess: AudioPreprocess) -> torch.Tensor:
    """``[T]`` waveform -> ``[frames, mel_bins]`` dB mel spectrogram as CLAP computes its fusion input.

    Power mel (HTK scale, no filter norm, centered reflect-padded STFT) converted to dB without a floor.
    Long clips are computed in blocks of `MEL_BLOCK_FRAMES` frames over the reflect-padded clip
    (each frame depends only on its own window, so the result is the same as one call), which
    keeps the complex STFT buffer small whatever the clip length.
    """
    hop, half = preprocess.hop_size, preprocess.window_size // 2
    frames = waveform.shape[-1] // hop + 1
    if frames <= MEL_BLOCK_FRAMES:
        return _power_to_db(_mel_transform(preprocess, True).to(waveform.device)(waveform)).transpose(-1, -2)
    length = waveform.shape[-1]
    to_mel = _mel_transform(preprocess, False).to(waveform.device)
    blocks = []
    for first in range(0, frames, MEL_BLOCK_FRAMES):
        last = min(frames, first + MEL_BLOCK_FRAMES)
        # The block's span in the clip; only the first and last blocks reach into the reflect padding.
        start, stop = first * hop - half, (last - 1) * hop + preprocess.window_size - half
        segment = waveform[max(0, start):min(length, stop)]
        if start < 0 or stop > length:
            pads = (max(0, -start), max(0, stop - length))
            segment = torch.nn.functional.pad(segment[None, None], pads, mode="reflect")[0, 0]
        blocks.append(_power_to_db(to_mel(segment)).transpose(-1, -2))
    return torch.cat(blocks)


def clap_fusion_input(waveform: torch.Tensor, preprocess: AudioPreprocess) -> tuple[torch.Tensor, bool]:
    """``[T]`` -> (``[4, frames, mel_bins]`` fusion mel, whether the clip is longer than one window).

    CLAP's fusion input: a short clip (after filling) is its mel four times; a long clip is the
    whole clip's mel shrunk to one window, followed by three window-long mel chunks from the
    front, middle and back thirds. CLAP picks the chunks at random; here each is the middle
    position of its third, so the result is deterministic.
    """
    import torchvision.transforms.v2.functional as TF

    samples = preprocess.clip_samples
    if waveform.shape[-1] <= samples:
        mel = clap_log_mel(fill_clip(waveform, samples, preprocess.short_clips), preprocess)
        return torch.stack([mel, mel, mel, mel]), False
    mel = clap_log_mel(waveform, preprocess)
    chunk = samples // preprocess.hop_size + 1
    total = mel.shape[0]
    if total == chunk:
        return torch.stack([mel, mel, mel, mel]), False
    thirds = np.array_split(np.arange(0, total - chunk + 1), 3)
    starts = [int(part[len(part) // 2]) if len(part) else 0 for part in thirds]
    shrunk = TF.resize(mel[None], [chunk, preprocess.mel_bins], antialias=True)[0]
    return torch.stack([shrunk] + [mel[s:s + chunk] for s in starts]), True
