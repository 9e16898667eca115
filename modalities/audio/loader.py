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
from collections.abc import Callable, Sequence
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
    quantize_int16_,
    window_starts,
)
from anybind.modality import check_file, describe

MIN_SAMPLE_RATE = 1_000  # Hz; below this a rate is a mistake (1 Hz asks the resampler for 48000x the input)
MAX_SAMPLE_RATE = 768_000  # Hz; the highest rate audio interfaces record at
MAX_CHANNELS = 64  # a 2-D array with more "channels" than this is almost surely [samples, channels]
STEREO_CHANNELS = 2  # a lone [C, T] array is one clip without `batched=` only for mono/stereo (torchaudio's layout)
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
    if not MIN_SAMPLE_RATE <= int(value) <= MAX_SAMPLE_RATE:
        raise InputError(f"`{argument}`: expected a sample rate between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, "
                         f"got {value!r} Hz")
    return int(value)


def to_mono_float(array: Any, argument: str, channels_first: bool | None = None, mix: bool = True) -> np.ndarray:
    """One clip as a ``[T]``, ``[channels, T]`` or ``[T, channels]`` array/tensor -> ``[T]`` float32 mono.

    A 2-D array's channel axis is the first when it has at most `MAX_CHANNELS` entries, else the
    last when that one does (soundfile's layout); `channels_first` True skips the guess (files).
    Integer PCM is divided by its full scale (int16: 32768); uint8 is centred at 128 first;
    channels are averaged (with ``mix=False`` they are kept: ``[channels, T]``). Raises
    `InputError` for empty, non-finite or oddly shaped input.
    """
    if isinstance(array, torch.Tensor):
        tensor = array.detach().cpu()
        array = (tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor).numpy()
    array = np.asarray(array)
    if array.ndim not in (1, 2):
        raise InputError(f"`{argument}`: expected a [samples], [channels, samples] or [samples, channels] array, "
                         f"got shape {array.shape}")
    if array.ndim == 2 and not channels_first and array.shape[0] > MAX_CHANNELS:
        if array.shape[1] > MAX_CHANNELS:
            raise InputError(f"`{argument}`: expected one clip with at most {MAX_CHANNELS} channels on its first or "
                             f"last axis, got shape {array.shape} (for N mono clips pass a list, or the [N, samples] "
                             f"array alone with batched=True)")
        array = array.T  # [samples, channels], as soundfile.read returns it
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
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise InputFileError(f"`{argument}`: audio file {str(path)!r} declares sample rate {info.samplerate} Hz; "
                             f"expected between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz")
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
    # A file may hold any number of channels (they are labelled by its header): mix them here, so
    # the array check for [channels, samples] (at most MAX_CHANNELS) never applies to files.
    return to_mono_float(block.mean(axis=1, dtype=np.float32), argument)


def source_windows(read: Callable[[int, int], np.ndarray], frames: int, rate: int, preprocess: AudioPreprocess,
                   argument: str) -> list[np.ndarray]:
    """The ``[clip_samples]`` windows of the clip policy over a ``frames``-long source at `rate` Hz.

    `read(start, count)` returns mono float32 source samples; only the chosen windows are read
    and each is resampled on its own, so memory stays at ``max_windows`` windows whatever the
    source length.
    """
    source_window = int(np.ceil(preprocess.clip_seconds * rate))
    windows = [resample(read(start, source_window), rate, preprocess.sample_rate, argument)
               for start in window_starts(frames, source_window, preprocess.max_windows)]
    if len(windows) == 1 and windows[0].shape[0] <= preprocess.clip_samples:
        return [fill_clip(torch.from_numpy(windows[0]), preprocess.clip_samples, preprocess.short_clips).numpy()]
    return [_exact_length(window, preprocess.clip_samples) for window in windows]


def read_file_windows(item: Any, argument: str, preprocess: AudioPreprocess) -> list[np.ndarray]:
    """An audio file -> the ``[clip_samples]`` float32 windows of the clip policy (short: one filled window).

    Reads only those windows (one seek + one block each, in the file's own rate), then
    mixes to mono and resamples each to `preprocess.sample_rate`.
    """
    import soundfile

    info = open_audio_file(item, argument)
    with soundfile.SoundFile(str(info.path)) as handle:
        return source_windows(lambda start, count: _read_block(handle, start, count, info, argument),
                              info.frames, info.sample_rate, preprocess, argument)


def check_fusion_length(frames: int, rate: int, preprocess: AudioPreprocess, what: str) -> None:
    """Raise `InputError` when a clip is longer than `preprocess.max_seconds`, the fusion input's limit."""
    if frames > preprocess.max_seconds * rate:
        raise InputError(f"{what} lasts {frames / rate:.1f} s, longer than the {preprocess.max_seconds:g} s the CLAP "
                         f"fusion input reads whole (`max_seconds` of the preprocess config); split it, or use a "
                         f"windowed preprocess such as 'clap-48k', which reads long files in windows")


def read_file_whole(item: Any, argument: str, preprocess: AudioPreprocess) -> np.ndarray:
    """An audio file -> its whole ``[T]`` float32 mono waveform at `preprocess.sample_rate`, read in blocks."""
    import soundfile

    info = open_audio_file(item, argument)
    check_fusion_length(info.frames, info.sample_rate, preprocess, f"`{argument}`: audio file {str(info.path)!r}")
    stream = None
    if info.sample_rate != preprocess.sample_rate:
        import soxr

        stream = soxr.ResampleStream(info.sample_rate, preprocess.sample_rate, 1, dtype="float32", quality="HQ")
    # One preallocated buffer (the resampled length plus slack), filled block by block: no second copy.
    capacity = int(np.ceil(info.frames * preprocess.sample_rate / info.sample_rate)) + BLOCK_FRAMES
    whole = np.empty(capacity, dtype=np.float32)
    filled = 0
    with soundfile.SoundFile(str(info.path)) as handle:
        for start in range(0, info.frames, BLOCK_FRAMES):
            mono = _read_block(handle, start, BLOCK_FRAMES, info, argument)
            last = start + BLOCK_FRAMES >= info.frames
            piece = stream.resample_chunk(mono, last=last) if stream is not None else mono
            if filled + piece.shape[0] > capacity:
                raise InputFileError(f"`{argument}`: audio file {str(info.path)!r} yields more samples than its header "
                                     f"declares ({info.frames} frames at {info.sample_rate} Hz)")
            whole[filled:filled + piece.shape[0]] = piece
            filled += piece.shape[0]
    whole = whole[:filled]
    if whole.shape[0] == 0:
        raise InputError(f"`{argument}`: {info.frames} sample(s) at {info.sample_rate} Hz is shorter than one sample "
                         f"at the encoder's {preprocess.sample_rate} Hz")
    return whole


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
            mono = to_mono_float(item, argument)
            if fusion:
                check_fusion_length(mono.shape[0], rate, preprocess, f"`{argument}`: the clip")
                whole = resample(mono, rate, preprocess.sample_rate, argument)
            else:
                windows = source_windows(lambda start, count: mono[start:start + count], mono.shape[0], rate,
                                         preprocess, argument)
        else:
            raise InputError(f"`{argument}`: expected an audio file path, a [samples] / [channels, samples] / "
                             f"[samples, channels] array or tensor; got {describe(item)}")
        if fusion:
            waveform = torch.from_numpy(np.ascontiguousarray(whole))
            if preprocess.quantize_int16:
                # A file's buffer is ours to change in place; an array may be the caller's own memory.
                waveform = quantize_int16_(waveform if is_audio_path(item) else waveform.clone())
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


def split_windows(batch: dict[str, torch.Tensor], count: int) -> list[dict[str, torch.Tensor]]:
    """A window batch of `count` clips (``clip_index`` ``[W]`` sorted ids 0..count-1, every other tensor
    ``[W, ...]``) -> one batch per clip holding its windows, with ``clip_index`` all 0."""
    clip_index = batch["clip_index"]
    sizes = torch.bincount(clip_index, minlength=count).tolist() if clip_index.numel() else [0] * count
    if len(sizes) != count or min(sizes, default=0) < 1 or bool((clip_index[1:] < clip_index[:-1]).any()):
        raise InputError(f"`clip_index`: expected sorted clip ids 0..{count - 1} with at least one window each, "
                         f"got {clip_index.tolist()[:20]}")
    pieces = {key: value.split(sizes) for key, value in batch.items() if key != "clip_index"}
    return [{**{key: value[i] for key, value in pieces.items()},
             "clip_index": torch.zeros(sizes[i], dtype=torch.int64)} for i in range(count)]


def join_windows(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Window batches -> one batch: windows concatenated in order, ``clip_index`` renumbered so the
    clips of part k get ids after those of parts 0..k-1 (inverse of `split_windows`)."""
    clip_index, offset = [], 0
    for part in parts:
        index = part["clip_index"]
        clip_index.append(index + offset)
        offset += int(index.max()) + 1 if index.numel() else 0
    joined = {key: torch.cat([part[key] for part in parts]) for key in parts[0] if key != "clip_index"}
    joined["clip_index"] = torch.cat(clip_index)
    return joined
