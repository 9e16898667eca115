"""The ``htsat`` audio encoder: LAION-CLAP's HTS-AT audio branch and its CLAP projection, plus a head.

The modules are laion_clap's own (``clap_module/htsat.py``, imported without laion_clap's
network-touching package ``__init__``, see `laion_source`), so official CLAP checkpoints load
unchanged: parameter names are ``audio_branch.*`` and ``audio_projection.*`` as in CLAP.
Inference runs a lean path over those modules: an FFT STFT with CLAP's own mel filterbank
instead of torchlibrosa's convolution STFT, Swin blocks with fused attention and no stored
attention maps (`swin_inference`), and only the pooled embedding (the classifier outputs
CLAP also computes are skipped). Long clips are several windows of
one batch whose embeddings are averaged per clip with one scatter, never a Python loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from anybind.config import load_named
from anybind.errors import ConfigError, InputError
from anybind.modalities.audio.laion_source import import_clap_module
from anybind.modalities.audio.preprocess import AudioPreprocess
from anybind.modalities.audio.swin_inference import SwinInference
from anybind.modality import Encoder, EncoderContext, ProjectionHead, float32_region
from anybind.registry import register_encoder

ARCHITECTURE_FOLDER = "encoders/audio"
DEFAULT_ARCHITECTURE = "htsat-tiny"
FUSION_TYPES = ("aff_2d", "iaff_2d", "daf_2d", "aff_1d", "iaff_1d", "daf_1d", "channel_map")


@dataclass(frozen=True)
class HTSATArchitecture:
    """HTS-AT sizes (``configs/encoders/audio/htsat-*.yaml``), as LAION-CLAP builds tiny/base/large."""

    name: str  # LAION-CLAP's model_name: tiny, base or large
    embed_dim: int  # channels of the first Swin stage (doubles per stage)
    depths: tuple[int, ...]  # Swin blocks per stage
    num_heads: tuple[int, ...]  # attention heads per stage
    spec_size: int = 256  # side of the square "image" the mel spectrogram is folded into
    patch_size: int = 4  # patch embedding kernel
    patch_stride: tuple[int, int] = (4, 4)  # patch embedding stride (frequency, time)
    window_size: int = 8  # Swin attention window
    num_classes: int = 527  # AudioSet classifier width (unused by embeddings, kept for checkpoints)
    clap_dim: int = 512  # width of CLAP's joint audio-text space (audio_projection output)
    version: int = 1

    @property
    def width(self) -> int:
        """Channels of the last stage: the width of the pooled audio embedding."""
        return int(self.embed_dim * 2 ** (len(self.depths) - 1))


@dataclass(frozen=True)
class HTSATConfig:
    """``encoder_args`` of the ``htsat`` audio encoder."""

    architecture: str | dict | None = None  # config name in configs/encoders/audio/ or fields; None: htsat-tiny
    # (or, with `clap_checkpoint`, the architecture detected from the checkpoint's tensors)
    fusion: str | None = None  # CLAP fusion type ("aff_2d" in the official fusion checkpoints); None: none
    # (or detected from `clap_checkpoint`)
    clap_checkpoint: str | None = None  # official CLAP .pt or a `convert-clap` .safetensors to load first
    output: Literal["anchor", "clap"] = "anchor"  # "clap": return CLAP's own 512-d embedding (no head)
    head_input: Literal["clap", "backbone"] = "clap"  # the head reads CLAP embeddings or pooled Swin features
    head_hidden: int | None = None  # hidden width of a 2-layer MLP head; None: a linear head


def load_architecture(spec: str | dict | None) -> HTSATArchitecture:
    """The `HTSATArchitecture` named by `spec` (a config name or its fields; None: htsat-tiny)."""
    return load_named(HTSATArchitecture, ARCHITECTURE_FOLDER, spec if spec is not None else DEFAULT_ARCHITECTURE,
                      "htsat architecture")


def build_clap_audio_modules(architecture: HTSATArchitecture, preprocess: AudioPreprocess,
                             fusion: str | None) -> tuple[nn.Module, nn.Sequential]:
    """laion_clap's HTSAT audio branch and CLAP's ``audio_projection`` MLP (Linear-ReLU-Linear)."""
    htsat = import_clap_module("htsat")
    audio_cfg = _ClapAudioConfig(preprocess)
    branch = htsat.HTSAT_Swin_Transformer(
        spec_size=architecture.spec_size, patch_size=architecture.patch_size,
        patch_stride=tuple(architecture.patch_stride), num_classes=architecture.num_classes,
        embed_dim=architecture.embed_dim, depths=list(architecture.depths), num_heads=list(architecture.num_heads),
        window_size=architecture.window_size, config=audio_cfg, enable_fusion=fusion is not None,
        fusion_type=fusion or "None")
    projection = nn.Sequential(nn.Linear(architecture.width, architecture.clap_dim), nn.ReLU(),
                               nn.Linear(architecture.clap_dim, architecture.clap_dim))
    return branch, projection


class _ClapAudioConfig:
    """The attribute bag laion_clap's HTSAT reads its front-end constants from."""

    def __init__(self, preprocess: AudioPreprocess) -> None:
        self.sample_rate = preprocess.sample_rate
        self.window_size = preprocess.window_size
        self.hop_size = preprocess.hop_size
        self.mel_bins = preprocess.mel_bins
        self.fmin = preprocess.fmin
        self.fmax = preprocess.fmax
        self.clip_samples = preprocess.clip_samples


def average_per_clip(features: torch.Tensor, clip_index: torch.Tensor) -> torch.Tensor:
    """``[W, C]`` window features and ``[W]`` sorted clip ids 0..B-1 -> ``[B, C]`` per-clip means."""
    if clip_index.numel() == features.shape[0] and bool((clip_index == torch.arange(
            features.shape[0], device=clip_index.device)).all()):
        return features
    count = int(clip_index.max()) + 1
    sums = features.new_zeros(count, features.shape[1]).index_add_(0, clip_index, features)
    windows = torch.bincount(clip_index, minlength=count).clamp(min=1).to(features.dtype)
    return sums / windows.unsqueeze(1)


def resolve_htsat(config: HTSATConfig, context: EncoderContext
                  ) -> tuple[HTSATArchitecture, str | None, dict[str, torch.Tensor] | None]:
    """(architecture, fusion type, CLAP audio state or None) for `config`, checked against `context`.

    With `clap_checkpoint`, unset architecture/fusion are read from the checkpoint's tensors and
    set ones must match them. Raises `ConfigError`/`CheckpointError` naming the mismatch.
    """
    preprocess = context.preprocess
    if not isinstance(preprocess, AudioPreprocess):
        raise ConfigError(f"the htsat encoder needs an audio preprocess config, got {type(preprocess).__name__}")
    if preprocess.long_clips not in ("windows", "fusion"):
        raise ConfigError(f"`preprocess`: the htsat encoder reads CLAP windows (clap-48k) or the CLAP fusion input "
                          f"(clap-48k-fusion), but the audio preprocess has long_clips={preprocess.long_clips!r}")
    state = None
    architecture = load_architecture(config.architecture) if config.architecture is not None else None
    fusion = config.fusion
    if fusion is not None and fusion not in FUSION_TYPES:
        raise ConfigError(f"`encoder_args.fusion`: expected one of {', '.join(FUSION_TYPES)} or null, got {fusion!r}")
    if config.clap_checkpoint is not None:
        from anybind.modalities.audio.clap_checkpoint import check_architecture, read_clap_audio_state

        state, detected = read_clap_audio_state(config.clap_checkpoint)
        architecture = architecture or load_architecture(f"htsat-{detected.size}")
        fusion = fusion if config.fusion is not None else detected.fusion
        check_architecture(detected, architecture, fusion, config.clap_checkpoint)
    architecture = architecture or load_architecture(None)
    if (fusion is not None) != (preprocess.long_clips == "fusion"):
        raise ConfigError(
            f"`preprocess`: the htsat encoder {'uses' if fusion else 'does not use'} CLAP fusion "
            f"(fusion={fusion!r}) but the audio preprocess has long_clips={preprocess.long_clips!r}; use "
            f"{'clap-48k-fusion' if fusion else 'clap-48k'}")
    if architecture.spec_size % preprocess.mel_bins:
        raise ConfigError(f"`preprocess.mel_bins` {preprocess.mel_bins} must divide the htsat spec_size "
                          f"{architecture.spec_size}")
    if config.output == "clap" and context.dim != architecture.clap_dim:
        raise ConfigError(f"`encoder_args.output`: 'clap' returns {architecture.clap_dim}-d CLAP embeddings "
                          f"but the anchor has dim {context.dim}; use output: anchor (with a head)")
    return architecture, fusion, state


@register_encoder("audio", "htsat")
class HTSATEncoder(Encoder):
    """LAION-CLAP's HTS-AT (tiny/base/large, optionally fusion) + CLAP projection + anchor head.

    `forward` maps an audio batch to ``[B, D]`` anchor features (or ``[B, 512]`` CLAP
    embeddings with ``output: clap``); `clap_embedding` always gives CLAP's own unit-norm embedding.
    """

    Config = HTSATConfig

    def __init__(self, config: HTSATConfig, context: EncoderContext) -> None:
        super().__init__(config, context)
        architecture, fusion, state = resolve_htsat(config, context)
        self.architecture = architecture
        self.fusion = fusion
        self.audio_branch, self.audio_projection = build_clap_audio_modules(architecture, context.preprocess, fusion)
        self.register_buffer("stft_window", torch.hann_window(context.preprocess.window_size), persistent=False)
        self._swin = SwinInference()
        if config.output != "clap":
            head_in = architecture.clap_dim if config.head_input == "clap" else architecture.width
            self.head = ProjectionHead(head_in, context.dim, config.head_hidden)
        if state is not None:
            from anybind.modalities.audio.clap_checkpoint import load_clap_audio_state

            load_clap_audio_state(self, state, str(config.clap_checkpoint))

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[W, samples]`` -> ``[W, 1, frames, mel_bins]`` float32 dB log-mel with CLAP's filterbank (autocast off).

        Same values as CLAP's torchlibrosa front end (periodic Hann, centred reflect padding,
        power 2, ``10 log10(max(x, 1e-10))``) computed with an FFT.
        """
        preprocess: AudioPreprocess = self.context.preprocess
        extractor = self.audio_branch.logmel_extractor
        reference_db = 10.0 * math.log10(max(extractor.amin, extractor.ref))
        with float32_region(waveform.device):  # the 1e-10 floor underflows in fp16
            spectrum = torch.stft(waveform.float(), preprocess.window_size, preprocess.hop_size,
                                  preprocess.window_size, window=self.stft_window.float(), center=True,
                                  pad_mode="reflect", return_complex=True)
            power = torch.view_as_real(spectrum).pow(2).sum(-1).transpose(1, 2)  # [W, frames, freq]
            mel = power @ extractor.melW.float()
            return (10.0 * torch.log10(mel.clamp(min=extractor.amin))).unsqueeze(1) - reference_db

    def window_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The pooled HTS-AT embedding of every input: ``[W, width]`` (windows, or clips for fusion)."""
        branch = self.audio_branch
        if self.fusion is not None:
            if "mel_fusion" not in batch:
                raise InputError("`batch`: the fusion htsat encoder needs {'mel_fusion', 'longer'} "
                                 f"(preprocess long_clips: fusion), got keys {sorted(batch)}")
            return branch({"mel_fusion": batch["mel_fusion"], "longer": batch["longer"]},
                          device=batch["mel_fusion"].device)["embedding"]
        x = batch["log_mel"] if "log_mel" in batch else self.log_mel(batch["waveform"])
        x = branch.bn0(x.transpose(1, 3)).transpose(1, 3)
        x = branch.reshape_wav2img(x)
        x = branch.pos_drop(branch.patch_embed(x) + (branch.absolute_pos_embed if branch.ape else 0))
        if self.training:
            for layer in branch.layers:
                x, _ = layer(x)
        else:
            x = self._swin(branch.layers, x)
        # CLAP's "embedding" is the average over every frequency-time token of the last stage.
        return branch.norm(x).mean(dim=1)

    def _clap_windows(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_projection(features), dim=-1)

    def clap_embedding(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, clap_dim]`` unit-norm CLAP embeddings (window embeddings averaged per clip, renormalized)."""
        per_window = self._clap_windows(self.window_features(batch))
        return F.normalize(average_per_clip(per_window, self._clip_index(batch, per_window)), dim=-1)

    def _clip_index(self, batch: dict[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
        index = batch.get("clip_index")
        return index if index is not None else torch.arange(features.shape[0], device=features.device)

    def front_end(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A window batch -> ``{"log_mel": [W, 1, frames, mel_bins], "clip_index"}`` (float32); fusion batches
        (already mel) are unchanged. `forward` takes either form."""
        if "waveform" not in batch:
            return batch
        with torch.autocast(device_type=batch["waveform"].device.type, enabled=False):
            return {"log_mel": self.log_mel(batch["waveform"].float()), "clip_index": batch["clip_index"]}

    @property
    def splits_head(self) -> bool:  # type: ignore[override]
        """The head can be split off unless the encoder returns CLAP's own embedding (no head)."""
        return self.config.output != "clap"

    def backbone_features(self, batch: dict[str, Any]) -> torch.Tensor:
        """``[B, clap_dim]`` (or ``[B, width]`` with ``head_input: backbone``) per-clip inputs of the head."""
        features = self.window_features(batch)
        if self.config.head_input == "clap":
            features = self._clap_windows(features)
        return average_per_clip(features, self._clip_index(batch, features))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Per-clip `backbone_features` -> ``[B, D]`` anchor features."""
        return self.head(features)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """An audio batch (see `load_audio_batch`, or its `front_end`) -> ``[B, D]`` anchor features
        (not normalized)."""
        if self.config.output == "clap":
            return self.clap_embedding(batch)
        return self.forward_head(self.backbone_features(batch))
