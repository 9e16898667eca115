"""The ``audio`` modality: audio files and waveform arrays -> anchor-space vectors.

Encoders: ``htsat`` (LAION-CLAP's HTS-AT with its CLAP projection, official checkpoints load
unchanged) and ``cnn`` (a compact log-mel CNN for small-scale binding on CPU). Preprocessing
constants live in ``configs/preprocess/audio/`` (``clap-48k``, ``clap-48k-fusion``, ``cnn-16k``).

    model.embed("audio", ["dog.wav", "rain.flac"])
    model.embed("audio", [waveform_1, waveform_2], sample_rate=16000)   # arrays need a rate
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from anybind.errors import InputError
from anybind.modalities.audio import cnn as cnn
from anybind.modalities.audio import htsat as htsat
from anybind.modalities.audio import yamnet as yamnet
from anybind.modalities.audio.loader import check_sample_rate, load_audio_batch
from anybind.modalities.audio.preprocess import AudioPreprocess
from anybind.modality import Modality
from anybind.registry import register_modality


@register_modality("audio")
class AudioModality(Modality):
    """Audio files (wav/flac/ogg/...) and waveform arrays, mixed to mono and resampled per encoder."""

    accepts = ("audio file paths, or waveforms as [samples] / [channels, samples] numpy arrays or tensors "
               "(a single [N, samples] array is N mono clips) with `sample_rate=` in Hz")
    Preprocess = AudioPreprocess
    default_preprocess = "clap-48k"
    default_encoder = "htsat"
    default_batch_size = 8
    default_templates = "audio"

    item_ndim = 1  # a [T] clip; a single [N, T] array is N mono clips (pass multi-channel clips in a list)

    def as_items(self, inputs: Any) -> list[Any]:
        """As `Modality.as_items`; arrays of more than 2 dimensions are refused."""
        if isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim > 2:
            raise InputError(f"`inputs`: expected a [samples] or [N, samples] array (or a list of clips), "
                             f"got shape {tuple(inputs.shape)}")
        return super().as_items(inputs)

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
