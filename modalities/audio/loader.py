"""Reading audio: files (wav/flac/ogg... through soundfile) and arrays -> mono float32 windows.

Every input is mixed down to mono (the mean of all channels; ``long_clips: spread`` has its own
policy, see `anybind.modalities.audio.clip_spread`), integer PCM is scaled to
[-1, 1], and the result is resampled to the encoder's rate with soxr. Files are never read
whole: only the windows the clip policy needs are read (seek + one block each), so a one-hour
file costs a few windows of memory. CLAP's fusion input needs the whole clip; it is read in
blocks and resampled as a stream.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anybind.errors import InputError, InputFileError
from anybind.modalities.audio.preprocess import (
    AudioPreprocess,
    clap_fusion_input,
    fill_clip,
    quantize_int16,
    window_starts,
)
from anybind.modality import check_file, describe

MAX_CHANNELS = 64  # a 2-D array with more "channels" than this is almost surely [samples, channels]
BLOCK_FRAMES = 1 << 18  # frames per block when a whole file is streamed (fusion input)
_INTEGER_SCALE = {np.dtype(np.int8): 128.0, np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0,
                  np.dtype(np.int64): 9223372036854775808.0}


def check_sample_rate(value: Any, argument: str = "sample_rate") -> int:
    """`value` as a positive integer rate in Hz; raise `InputError` naming `argument` otherwise."""
    if value is None:
        raise InputError(f"`{argument}`: audio arrays need an explicit sample rate, e.g. "
                         f"embed('audio', arrays, {argument}=16000); got none")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or float(value) != int(value):
        raise InputError(f"`{argument}`: expected a positive integer sample rate in Hz, got {value!r}")
    if int(value) <= 0:
        raise InputError(f"`{argument}`: expected a positive integer sample rate in Hz, got {value!r}")
    return int(value)


def to_mono_float(array: Any, argument: str, mix: bool = True) -> np.ndarray:
    """A ``[T]`` or ``[channels, T]`` array/tensor -> ``[T]`` float32 mono in [-1, 1] for integer PCM.

    Integer PCM is divided by its full scale (int16: 32768); uint8 is centred at 128 first;
    channels are averaged (with ``mix=False`` they are kept: ``[channels, T]``). Raises
    `InputError` for empty, non-finite or oddly shaped input.
    """
    if isinstance(array, torch.Tensor):
        tensor = array.detach().cpu()
        array = (tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor).numpy()
    array = np.asarray(array)
    if array.ndim not in (1, 2):
        raise InputError(f"`{argument}`: expected a [samples] or [channels, samples] array, got shape {array.shape}")
    if array.ndim == 2 and array.shape[0] > MAX_CHANNELS:
        raise InputError(f"`{argument}`: expected [channels, samples] with at most {MAX_CHANNELS} channels, got "
                         f"shape {array.shape} (transpose a [samples, channels] array)")
    if array.shape[-1] == 0 or array.size == 0:
        raise InputError(f"`{argument}`: expected at least one audio sample, got shape {array.shape} (zero-length audio)")
    if array.dtype == np.uint8:
        samples = (array.astype(np.float32) - 128.0) / 128.0
    elif array.dtype in _INTEGER_SCALE:
        samples = (array.astype(np.float64) / _INTEGER_SCALE[array.dtype]).astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        samples = array.astype(np.float32, copy=False)
    else:
        raise InputError(f"`{argument}`: expected float or integer PCM samples, got dtype {array.dtype}")
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise InputError(f"`{argument}`: expected finite audio samples, got {bad} NaN/inf value(s)")
    if not mix:
        return samples if samples.ndim == 2 else samples[None]
    return samples.mean(axis=0, dtype=np.float32) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, from_rate: int, to_rate: int, argument: str = "inputs") -> np.ndarray:
    """``[T]`` float32 at `from_rate` Hz -> float32 at `to_rate` Hz (soxr, high quality).

    Raises `InputError` naming `argument` when the clip is shorter than one sample at `to_rate`.
    """
    if from_rate == to_rate:
        return samples
    import soxr

    out = np.asarray(soxr.resample(samples, from_rate, to_rate, quality="HQ"), dtype=np.float32)
    if out.shape[0] == 0:
        raise InputError(f"`{argument}`: {samples.shape[0]} sample(s) at {from_rate} Hz is shorter than one sample "
                         f"at the encoder's {to_rate} Hz")
    return out


def _exact_length(samples: np.ndarray, length: int) -> np.ndarray:
    if samples.shape[0] >= length:
        return samples[:length]
    return np.pad(samples, (0, length - samples.shape[0]))


@dataclass(frozen=True)
class AudioFileInfo:
    """What soundfile reports about a file: frames, rate (Hz) and channel count."""

    path: Path
    frames: int
    sample_rate: int
    channels: int


def open_audio_file(item: Any, argument: str) -> AudioFileInfo:
    """Check that `item` is a readable, non-empty audio file; raise `InputFileError` naming `argument`."""
    import soundfile

    path = check_file(item, argument, "an audio")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError, TypeError, ValueError) as error:  # LibsndfileError is a RuntimeError
        raise InputFileError(f"`{argument}`: {str(path)!r} is not a readable audio file "
                             f"(expected wav/flac/ogg or another format libsndfile reads): {error}") from None
    truncation = _declared_truncation(str(getattr(info, "extra_info", "")))
    if truncation is not None:
        raise InputFileError(f"`{argument}`: audio file {str(path)!r} is truncated: its header declares "
                             f"{truncation[0]} data bytes but the file holds {truncation[1]}")
    if info.frames <= 0:
        raise InputFileError(f"`{argument}`: audio file {str(path)!r} holds no samples (zero-length audio)")
    if info.samplerate <= 0:
        raise InputFileError(f"`{argument}`: audio file {str(path)!r} declares sample rate {info.samplerate}")
    return AudioFileInfo(path=path, frames=int(info.frames), sample_rate=int(info.samplerate),
                         channels=int(info.channels))


def _declared_truncation(log: str) -> tuple[int, int] | None:
    """(declared, actual) data bytes when libsndfile's header log reports a data chunk cut short.

    libsndfile silently shortens a truncated WAV/AIFF to what is present and notes
    ``data : <declared> (should be <actual>)`` in its log. Streamed files that leave the size
    as a placeholder (0 or 0xFFFFFFFF) are not truncated.
    """
    match = re.search(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", log, re.MULTILINE)
    if match is None:
        return None
    declared, actual = int(match[1]), int(match[2])
    if declared in (0, 0xFFFFFFFF, 0x7FFFFFFF) or declared <= actual:
        return None
    return declared, actual


def _read_block(handle: Any, start: int, frames: int, info: AudioFileInfo, argument: str) -> np.ndarray:
    import soundfile

    try:
        handle.seek(start)
        block = handle.read(frames, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, soundfile.SoundFileError) as error:
        raise InputFileError(f"`{argument}`: audio file {str(info.path)!r} is corrupt or truncated: {error}") from None
    if block.shape[0] < min(frames, info.frames - start):
        raise InputFileError(f"`{argument}`: audio file {str(info.path)!r} is truncated: expected "
                             f"{min(frames, info.frames - start)} frames at offset {start}, read {block.shape[0]}")
    if block.shape[0] == 0:
        raise InputFileError(f"`{argument}`: audio file {str(info.path)!r} holds no samples (zero-length audio)")
    return to_mono_float(block.T, argument)


def read_file_windows(item: Any, argument: str, preprocess: AudioPreprocess) -> list[np.ndarray]:
    """An audio file -> the ``[clip_samples]`` float32 windows of the clip policy (short: one filled window).

    Reads only those windows (one seek + one block each, in the file's own rate), then
    mixes to mono and resamples each to `preprocess.sample_rate`.
    """
    import soundfile

    info = open_audio_file(item, argument)
    source_window = int(np.ceil(preprocess.clip_seconds * info.sample_rate))
    starts = window_starts(info.frames, source_window, preprocess.max_windows)
    windows = []
    with soundfile.SoundFile(str(info.path)) as handle:
        for start in starts:
            mono = _read_block(handle, start, source_window, info, argument)
            windows.append(resample(mono, info.sample_rate, preprocess.sample_rate, argument))
    if len(windows) == 1 and windows[0].shape[0] <= preprocess.clip_samples:
        return [fill_clip(torch.from_numpy(windows[0]), preprocess.clip_samples, preprocess.short_clips).numpy()]
    return [_exact_length(window, preprocess.clip_samples) for window in windows]


def read_file_whole(item: Any, argument: str, preprocess: AudioPreprocess) -> np.ndarray:
    """An audio file -> its whole ``[T]`` float32 mono waveform at `preprocess.sample_rate`, read in blocks."""
    import soundfile

    info = open_audio_file(item, argument)
    stream = None
    if info.sample_rate != preprocess.sample_rate:
        import soxr

        stream = soxr.ResampleStream(info.sample_rate, preprocess.sample_rate, 1, dtype="float32", quality="HQ")
    pieces = []
    with soundfile.SoundFile(str(info.path)) as handle:
        for start in range(0, info.frames, BLOCK_FRAMES):
            mono = _read_block(handle, start, BLOCK_FRAMES, info, argument)
            last = start + BLOCK_FRAMES >= info.frames
            pieces.append(stream.resample_chunk(mono, last=last) if stream is not None else mono)
    whole = np.concatenate(pieces).astype(np.float32, copy=False)
    if whole.shape[0] == 0:
        raise InputError(f"`{argument}`: {info.frames} sample(s) at {info.sample_rate} Hz is shorter than one sample "
                         f"at the encoder's {preprocess.sample_rate} Hz")
    return whole


def array_windows(samples: np.ndarray, preprocess: AudioPreprocess) -> list[np.ndarray]:
    """A ``[T]`` mono waveform at the encoder rate -> its ``[clip_samples]`` windows (see `read_file_windows`)."""
    size = preprocess.clip_samples
    if samples.shape[0] <= size:
        return [fill_clip(torch.from_numpy(np.ascontiguousarray(samples)), size, preprocess.short_clips).numpy()]
    return [samples[start:start + size] for start in window_starts(samples.shape[0], size, preprocess.max_windows)]


def is_audio_path(item: Any) -> bool:
    """True for str/Path-like items (file inputs), False for arrays and tensors."""
    return isinstance(item, str) or hasattr(item, "__fspath__")


def load_audio_batch(items: Sequence[Any], preprocess: AudioPreprocess, sample_rate: Any = None) -> dict[str, torch.Tensor]:
    """User items (paths, arrays, tensors) -> the batch an audio encoder takes.

    With ``long_clips: windows`` the batch is ``{"waveform": [W, clip_samples] float32,
    "clip_index": [W] int64}`` (window w belongs to item ``clip_index[w]``); with ``fusion``
    it is ``{"mel_fusion": [B, 4, frames, mel_bins], "longer": [B] bool}``.
    `sample_rate` (Hz) is required when any item is an array.
    """
    if preprocess.long_clips == "spread":
        from anybind.modalities.audio.clip_spread import load_spread_batch

        return load_spread_batch(items, preprocess, sample_rate)
    rate = None
    fusion = preprocess.long_clips == "fusion"
    waveforms: list[np.ndarray] = []
    clip_index: list[int] = []
    fusion_mels, longer = [], []
    for index, item in enumerate(items):
        argument = f"inputs[{index}]"
        if is_audio_path(item):
            if fusion:
                whole = read_file_whole(item, argument, preprocess)
            else:
                windows = read_file_windows(item, argument, preprocess)
        elif isinstance(item, (np.ndarray, torch.Tensor)):
            rate = rate if rate is not None else check_sample_rate(sample_rate)
            whole = resample(to_mono_float(item, argument), rate, preprocess.sample_rate, argument)
            if not fusion:
                windows = array_windows(whole, preprocess)
        else:
            raise InputError(f"`{argument}`: expected an audio file path, a [samples] / [channels, samples] "
                             f"array or tensor; got {describe(item)}")
        if fusion:
            waveform = torch.from_numpy(np.ascontiguousarray(whole))
            if preprocess.quantize_int16:
                waveform = quantize_int16(waveform)
            mel, is_longer = clap_fusion_input(waveform, preprocess)
            fusion_mels.append(mel)
            longer.append(is_longer)
        else:
            waveforms.extend(windows)
            clip_index.extend([index] * len(windows))
    if fusion:
        return {"mel_fusion": torch.stack(fusion_mels), "longer": torch.tensor(longer, dtype=torch.bool)}
    batch = torch.from_numpy(np.stack(waveforms))
    if preprocess.quantize_int16:
        batch = quantize_int16(batch)
    return {"waveform": batch, "clip_index": torch.tensor(clip_index, dtype=torch.int64)}
