"""The ``cnn`` audio encoder: a compact log-mel CNN for binding at small scale on CPU.

Log-mel spectrogram (constants from the modality's preprocess config) -> per-mel-bin batch
norm -> stages of 3x3 conv + batch norm + ReLU + 2x2 average pool -> mean over frequency,
mean + max over time -> per-clip average of windows -> projection head into the anchor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from anybind.config import load_named
from anybind.errors import ConfigError
from anybind.modalities.audio.htsat import ARCHITECTURE_FOLDER, average_per_clip
from anybind.modalities.audio.preprocess import AudioPreprocess, windowed_preprocess
from anybind.modality import Encoder, EncoderContext, ProjectionHead, float32_region
from anybind.registry import register_encoder

LOG_FLOOR = 1e-10  # power floor before the log (-100 dB)


@dataclass(frozen=True)
class AudioCNNArchitecture:
    """Stage widths of the log-mel CNN (``configs/encoders/audio/cnn-*.yaml``)."""

    channels: tuple[int, ...]  # output channels of each conv stage
    version: int = 1


@dataclass(frozen=True)
class AudioCNNConfig:
    """``encoder_args`` of the ``cnn`` audio encoder."""

    architecture: str | dict = "cnn-small"  # config name in configs/encoders/audio/ or its fields
    head_hidden: int | None = None  # hidden width of a 2-layer MLP head; None: a linear head
    dropout: float = 0.0  # dropout before the head


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True), nn.AvgPool2d(2, ceil_mode=True))


@register_encoder("audio", "cnn")
class AudioCNNEncoder(Encoder):
    """Compact log-mel CNN + projection head: ``[W, samples]`` windows -> ``[B, D]`` anchor features."""

    Config = AudioCNNConfig

    def __init__(self, config: AudioCNNConfig, context: EncoderContext) -> None:
        super().__init__(config, context)
        import torchaudio

        preprocess = windowed_preprocess(context.preprocess, "cnn", "cnn-16k")
        architecture = load_named(AudioCNNArchitecture, ARCHITECTURE_FOLDER, config.architecture, "cnn architecture")
        if not architecture.channels or min(architecture.channels) < 1:
            raise ConfigError(f"cnn architecture: `channels` must be positive widths, got {architecture.channels}")
        self.architecture = architecture
        self.register_buffer("stft_window", torch.hann_window(preprocess.window_size), persistent=False)
        filterbank = torchaudio.functional.melscale_fbanks(
            preprocess.window_size // 2 + 1, float(preprocess.fmin), float(preprocess.fmax), preprocess.mel_bins,
            preprocess.sample_rate, norm="slaney", mel_scale="slaney")
        self.register_buffer("mel_filterbank", filterbank, persistent=False)
        self.input_norm = nn.BatchNorm2d(preprocess.mel_bins)
        widths = (1, *architecture.channels)
        self.stages = nn.Sequential(*(_stage(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.dropout = nn.Dropout(config.dropout)
        self.head = ProjectionHead(2 * architecture.channels[-1], context.dim, config.head_hidden)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[W, samples]`` -> ``[W, 1, frames, mel_bins]`` float32 log-mel power in dB (autocast off)."""
        preprocess: AudioPreprocess = self.context.preprocess
        with float32_region(waveform.device):
            spectrum = torch.stft(waveform.float(), preprocess.window_size, preprocess.hop_size,
                                  preprocess.window_size, window=self.stft_window.float(), center=True,
                                  pad_mode="reflect", return_complex=True)
            power = torch.view_as_real(spectrum).pow(2).sum(-1).transpose(1, 2) @ self.mel_filterbank.float()
            return (10.0 / math.log(10.0)) * power.clamp(min=LOG_FLOOR).log().unsqueeze(1)

    front_end_args = ()  # the log-mel depends on the preprocess config only, not on the tower's args

    def front_end(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``{"waveform", "clip_index"}`` -> ``{"log_mel": [W, 1, frames, mel_bins], "clip_index"}`` (float32);
        `forward` takes either form, so the trainer can cache log-mels instead of waveforms."""
        if "log_mel" in batch:
            return batch
        with torch.autocast(device_type=batch["waveform"].device.type, enabled=False):
            return {"log_mel": self.log_mel(batch["waveform"].float()), "clip_index": batch["clip_index"]}

    def window_features(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[W, samples]`` -> ``[W, 2 * channels[-1]]`` pooled CNN features."""
        return self.mel_features(self.log_mel(waveform))

    def mel_features(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``[W, 1, frames, mel_bins]`` log-mel -> ``[W, 2 * channels[-1]]`` pooled CNN features."""
        x = self.input_norm(log_mel.transpose(1, 3)).transpose(1, 3)
        x = self.stages(x).mean(dim=3)  # [W, C, frames']
        return torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)

    splits_head = True

    def backbone_features(self, batch: dict[str, Any]) -> torch.Tensor:
        """A waveform or log-mel batch -> ``[B, 2 * channels[-1]]`` per-clip CNN features (before dropout + head)."""
        features = (self.mel_features(batch["log_mel"]) if "log_mel" in batch
                    else self.window_features(batch["waveform"]))
        return average_per_clip(features, batch["clip_index"])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, 2 * channels[-1]]`` per-clip features -> ``[B, D]`` (dropout, then the head)."""
        return self.head(self.dropout(features))

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """``{"waveform": [W, samples], "clip_index": [W]}`` (or ``{"log_mel", "clip_index"}`` from `front_end`)
        -> ``[B, D]`` anchor features (not normalized)."""
        return self.forward_head(self.backbone_features(batch))
