"""The audio ``imagebind`` encoder: ImageBind's audio tower on Kaldi log-mel "images".

Takes the batch of ``configs/preprocess/audio/imagebind-16k.yaml`` (``long_clips: spread``, see
`anybind.modalities.audio.clip_spread`): per input, 3 normalized Kaldi log-mel clips; each clip
-> tower; the unit-norm clip vectors of an input are averaged (as ImageBind averages its clips).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anybind.anchors.imagebind import ImageBindTowerEncoder
from anybind.errors import ConfigError
from anybind.modality import EncoderContext, NoConfig
from anybind.registry import register_encoder


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
        """``{"mel": [B, clips, mel_bins, frames]}`` -> ``[B, D]`` (mean of the unit clip vectors)."""
        mel = batch["mel"]
        features = F.normalize(self.tower(mel.flatten(0, 1)[:, None]), dim=-1)
        return features.view(mel.shape[0], mel.shape[1], -1).mean(dim=1)
