"""ImageBind's audio clip policy (``long_clips: spread``), reproduced as its reference code does it.

- The whole file is read and resampled at once (torchaudio's default sinc resampler with
  ``resampler: torchaudio``), every channel kept until the clips are cut.
- Exactly ``max_windows`` clips (ImageBind: 3) of ``clip_seconds`` (2 s) are cut. With
  ``d = duration - clip_seconds`` (0 when shorter), clip k starts at ``k * d / max_windows``
  seconds, k = 0 .. max_windows - 1 (pytorchvideo's ``ConstantClipsPerVideoSampler``: the starts
  divide ``d`` by the clip count, not by count - 1, so the last clip ends ``d / max_windows``
  before the end of the file). Times are exact fractions; sample indices are floored.
- Audio shorter than one clip gives max_windows identical clips of the whole audio; they are not
  filled here: the encoder zero-pads the log-mel frames (``target_frames``), as the reference does.
- Each clip's mean (over all channels) is subtracted in place on the shared waveform, in clip
  order, as the reference does, so overlapping clips see earlier clips' removal (this only
  touches frames straddling a clip boundary, since Kaldi fbank removes each frame's DC offset).
- ``channels: first`` then keeps channel 0: the reference's Kaldi fbank reads channel 0 only.
- Each clip -> Kaldi fbank log-mel (`kaldi_log_mel`), zero-padded or cut to ``target_frames``,
  normalized with ``norm_mean`` / ``norm_std``.

The batch is ``{"mel": [B, max_windows, mel_bins, target_frames]}`` float32, one row per input.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anybind.errors import InputError, InputFileError
from anybind.modalities.audio.loader import check_sample_rate, is_audio_path, open_audio_file, to_mono_float
from anybind.modalities.audio.preprocess import AudioPreprocess
from anybind.modality import describe


def spread_clip_bounds(total: int, sample_rate: int, clip_seconds: float, count: int) -> list[tuple[int, int]]:
    """``count`` (start, end) sample ranges of ``clip_seconds`` spread over `total` samples (module docstring)."""
    duration = total / sample_rate
    step = Fraction(max(duration - clip_seconds, 0)) / count
    bounds = []
    for k in range(count):
        start = step * k
        bounds.append((int(start * sample_rate), min(int((start + Fraction(clip_seconds)) * sample_rate), total)))
    return bounds


def read_channels(item: Any, argument: str) -> tuple[np.ndarray, int]:
    """A whole audio file -> (``[channels, T]`` float32 in [-1, 1], its sample rate in Hz)."""
    import soundfile

    info = open_audio_file(item, argument)
    try:
        data = soundfile.read(str(info.path), dtype="float32", always_2d=True)[0]
    except (RuntimeError, OSError, ValueError, soundfile.SoundFileError) as error:
        raise InputFileError(f"`{argument}`: audio file {str(info.path)!r} is corrupt or truncated: {error}") from None
    if data.shape[0] < info.frames:
        raise InputFileError(f"`{argument}`: audio file {str(info.path)!r} is truncated: expected {info.frames} "
                             f"frames, read {data.shape[0]}")
    return np.ascontiguousarray(data.T), info.sample_rate


def resample_channels(channels: np.ndarray, from_rate: int, to_rate: int, resampler: str, argument: str) -> np.ndarray:
    """``[C, T]`` float32 at `from_rate` -> at `to_rate` Hz with soxr or torchaudio's sinc resampler."""
    if from_rate == to_rate:
        return channels
    if resampler == "torchaudio":
        import torchaudio

        out = torchaudio.functional.resample(torch.from_numpy(channels), from_rate, to_rate).numpy()
    else:
        import soxr

        out = np.asarray(soxr.resample(channels.T, from_rate, to_rate, quality="HQ"), dtype=np.float32).T
    if out.shape[-1] == 0:
        raise InputError(f"`{argument}`: {channels.shape[-1]} sample(s) at {from_rate} Hz is shorter than one sample "
                         f"at the encoder's {to_rate} Hz")
    return np.ascontiguousarray(out, dtype=np.float32)


def spread_windows(channels: np.ndarray, preprocess: AudioPreprocess) -> list[np.ndarray]:
    """``[C, T]`` at the encoder rate -> the clips (``[<= clip_samples]`` each), mean-removed in place in
    clip order, then mixed or reduced to channel 0 per `preprocess.channels`."""
    clips = []
    for start, end in spread_clip_bounds(channels.shape[-1], preprocess.sample_rate, preprocess.clip_seconds,
                                         preprocess.max_windows):
        view = channels[:, start:end]
        view -= view.mean(dtype=np.float32)
        clips.append(view[0].copy() if preprocess.channels == "first" else view.mean(axis=0, dtype=np.float32))
    return clips


def kaldi_log_mel(waveform: torch.Tensor, preprocess: AudioPreprocess) -> torch.Tensor:
    """``[T]`` float32 clip -> ``[mel_bins, target_frames]`` normalized Kaldi log-mel (ImageBind / AST front end).

    Kaldi fbank (htk_compat, Hanning window, no dither, no energy term, per-frame DC removal),
    zero-padded or cut to `target_frames`, then ``(x - norm_mean) / norm_std``.
    """
    import torchaudio

    rate = preprocess.sample_rate
    fbank = torchaudio.compliance.kaldi.fbank(
        waveform.float()[None], htk_compat=True, sample_frequency=rate, use_energy=False, window_type="hanning",
        num_mel_bins=preprocess.mel_bins, dither=0.0, frame_length=1000.0 * preprocess.window_size / rate,
        frame_shift=1000.0 * preprocess.hop_size / rate, low_freq=float(preprocess.fmin),
        high_freq=float(preprocess.fmax)).transpose(0, 1)
    target = preprocess.target_frames or fbank.shape[1]
    fbank = F.pad(fbank, (0, target - fbank.shape[1])) if fbank.shape[1] < target else fbank[:, :target]
    return (fbank - preprocess.norm_mean) / preprocess.norm_std


def load_spread_batch(items: Sequence[Any], preprocess: AudioPreprocess, sample_rate: Any = None) -> dict[str, torch.Tensor]:
    """User items -> ``{"mel": [B, max_windows, mel_bins, target_frames]}`` (module docstring)."""
    mels = []
    rate = None
    for index, item in enumerate(items):
        argument = f"inputs[{index}]"
        if is_audio_path(item):
            channels, source_rate = read_channels(item, argument)
        elif isinstance(item, (np.ndarray, torch.Tensor)):
            rate = rate if rate is not None else check_sample_rate(sample_rate)
            channels, source_rate = to_mono_float(item, argument, mix=False).copy(), rate
        else:
            raise InputError(f"`{argument}`: expected an audio file path, a [samples] / [channels, samples] "
                             f"array or tensor; got {describe(item)}")
        channels = resample_channels(channels, source_rate, preprocess.sample_rate, preprocess.resampler, argument)
        clips = []
        for clip in spread_windows(channels, preprocess):
            if clip.shape[0] < preprocess.window_size:
                raise InputError(f"`{argument}`: the audio is {clip.shape[0]} sample(s) at {preprocess.sample_rate} Hz, "
                                 f"shorter than one analysis frame ({preprocess.window_size} samples); shorter clips "
                                 f"than {preprocess.clip_seconds:g} s are zero-padded in the log-mel, but one frame "
                                 "is needed")
            clips.append(kaldi_log_mel(torch.from_numpy(clip[:preprocess.clip_samples]), preprocess))
        mels.append(torch.stack(clips))
    return {"mel": torch.stack(mels)}
