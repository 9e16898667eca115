"""The audio ``imagebind`` encoder: ImageBind's audio tower on Kaldi log-mel "images".

Takes the batch of ``configs/preprocess/audio/imagebind-16k.yaml`` (``long_clips: spread``):
each clip -> Kaldi fbank -> ``[1, mel_bins, target_frames]`` normalized log-mel -> tower; the
unit-norm clip vectors of an input are averaged (ImageBind averages its 3 clips the same way).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anybind.anchors.imagebind import ImageBindTowerEncoder
from anybind.errors import ConfigError
from anybind.modalities.audio.htsat import average_per_clip
from anybind.modalities.audio.preprocess import AudioPreprocess
from anybind.modality import EncoderContext, NoConfig
from anybind.registry import register_encoder


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


@register_encoder("audio", "imagebind")
class ImageBindAudioEncoder(ImageBindTowerEncoder):
    """ImageBind's audio tower (from the ``imagebind`` anchor's checkpoint) on Kaldi log-mel clips."""

    Config = NoConfig
    tower_modality = "audio"

    def __init__(self, config: NoConfig, context: EncoderContext) -> None:
        preprocess = context.preprocess
        if preprocess.long_clips != "spread" or preprocess.target_frames is None:
            raise ConfigError("`modalities.audio.preprocess`: the imagebind audio encoder needs an ImageBind "
                              "preprocess (e.g. 'imagebind-16k': long_clips spread, target_frames set), got "
                              f"long_clips={preprocess.long_clips!r}, target_frames={preprocess.target_frames!r}")
        super().__init__(config, context)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"waveform": [W, S], "length": [W], "clip_index": [W]}`` -> ``[B, D]`` (mean of unit clip vectors)."""
        preprocess: AudioPreprocess = self.context.preprocess
        with torch.autocast(batch["waveform"].device.type, enabled=False):
            mels = torch.stack([kaldi_log_mel(clip[:int(length)], preprocess)
                                for clip, length in zip(batch["waveform"], batch["length"])])
        features = F.normalize(self.tower(mels[:, None]), dim=-1)
        return average_per_clip(features, batch["clip_index"])
