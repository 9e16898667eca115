"""The ``audio`` modality: audio files and waveform arrays -> anchor-space vectors.

Encoders: ``htsat`` (LAION-CLAP's HTS-AT with its CLAP projection, official checkpoints load
unchanged), ``cnn`` (a compact log-mel CNN for small-scale binding on CPU) and ``imagebind``
(ImageBind's audio tower, from an ``imagebind`` anchor's checkpoint). Preprocessing constants
live in ``configs/preprocess/audio/`` (``clap-48k``, ``clap-48k-fusion``, ``cnn-16k``, ``imagebind-16k``).

    model.embed("audio", ["dog.wav", "rain.flac"])
    model.embed("audio", [waveform_1, waveform_2], sample_rate=16000)   # arrays need a rate
    model.embed("audio", stereo, sample_rate=44100)   # one clip: [2, T] (torchaudio) or [T, 2] (soundfile)
    model.embed("audio", clips, sample_rate=16000, batched=True)   # an [N, T] array of N mono clips
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from anybind.errors import InputError
from anybind.modalities.audio import cnn as cnn
from anybind.modalities.audio import htsat as htsat
from anybind.modalities.audio import imagebind as imagebind
from anybind.modalities.audio import yamnet as yamnet
from anybind.modalities.audio.loader import (
    MAX_CHANNELS,
    STEREO_CHANNELS,
    check_sample_rate,
    join_windows,
    load_audio_batch,
    split_windows,
)
from anybind.modalities.audio.preprocess import AudioPreprocess
from anybind.modality import Batch, Modality
from anybind.registry import register_modality


@register_modality("audio")
class AudioModality(Modality):
    """Audio files (wav/flac/ogg/...) and waveform arrays, mixed to mono (ImageBind: channel 0) and resampled
    per encoder."""

    accepts = ("audio file paths, or waveforms as [samples] / [channels, samples] / [samples, channels] numpy "
               "arrays or tensors with `sample_rate=` in Hz")
    Preprocess = AudioPreprocess
    default_preprocess = "clap-48k"
    default_encoder = "htsat"
    default_batch_size = 8
    default_templates = "audio"

    item_ndim = 1  # a [T] clip
    batch_rule = ("one array is one clip: [samples], or 2-D with a channel axis of at most "
                  f"{STEREO_CHANNELS} channels first or {MAX_CHANNELS} channels last; several clips are a list, "
                  "or an [N, samples] array with batched=True")
    deterministic_load = True  # fixed window positions, deterministic fusion chunks: cacheable

    def split_batch(self, batch: Batch, count: int) -> list[Batch]:
        """Per-item batches; a window batch (``clip_index``) gives each item its own windows with
        ``clip_index`` 0 (see `split_windows`)."""
        if isinstance(batch, dict) and "clip_index" in batch:
            return split_windows(batch, count)
        return super().split_batch(batch, count)

    def join_batches(self, parts: Sequence[Batch]) -> Batch:
        """Inverse of `split_batch`: windows concatenated, ``clip_index`` renumbered 0..len(parts)-1."""
        if isinstance(parts[0], dict) and "clip_index" in parts[0]:
            return join_windows(parts)  # type: ignore[arg-type]
        return super().join_batches(parts)

    def array_layout(self, shape: tuple[int, ...]) -> Literal["item", "batch"] | None:
        """A lone ``[T]`` array is one clip; a 2-D array is one clip when one axis is clearly channels
        (torchaudio's ``[1 or 2, T]``, soundfile's ``[T, C <= 64]``); other 2-D shapes are ambiguous."""
        if len(shape) == 2:
            first, last = shape
            if first <= STEREO_CHANNELS < last or last <= MAX_CHANNELS < first:
                return "item"
            return None
        return "item"

    def as_items(self, inputs: Any, batched: bool | None = None) -> list[Any]:
        """As `Modality.as_items`; a lone array of more than 2 dimensions is refused (3 with `batched=True`)."""
        if isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim > (3 if batched else 2):
            raise InputError(f"`inputs`: expected one clip as a [samples] or 2-D [channels, samples] array, or a "
                             f"batch as a list of clips or an [N, samples] array with batched=True; got shape "
                             f"{tuple(inputs.shape)}")
        return super().as_items(inputs, batched)

    def load(self, items: Sequence[Any], **options: Any) -> dict[str, torch.Tensor]:
        """Items -> the encoder batch (see `anybind.modalities.audio.loader.load_audio_batch`).

        Option `sample_rate` (Hz) is required for arrays; files use their own rate.
        """
        sample_rate = options.pop("sample_rate", None)
        if options:
            raise InputError(f"audio inputs take only the option `sample_rate`, got {', '.join(sorted(options))}")
        if sample_rate is not None:
            check_sample_rate(sample_rate)
        return load_audio_batch(items, self.preprocess, sample_rate)
