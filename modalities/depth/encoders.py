"""Depth encoders: ``anchor-image`` (zero-shot, frozen image tower) and ``cnn`` (small, trainable)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from anybind.modality import Encoder, EncoderContext, ProjectionHead, float32_region
from anybind.registry import register_encoder


def disparity_image(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B, 1, S, S]`` disparity -> the same scaled by each map's largest valid value into [0, 1]
    (near = bright, invalid = 0); float32, autocast off."""
    with float32_region(batch["disparity"].device):
        disparity = batch["disparity"].float() * batch["valid"].float()
        peak = disparity.flatten(1).amax(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
        return disparity / peak


@dataclass(frozen=True)
class AnchorImageDepthConfig:
    """``encoder_args`` of the depth ``anchor-image`` encoder."""

    # Apply the anchor's pixel mean/std to the rendered disparity (it is fed like a gray photo).
    normalize_pixels: bool = True


@register_encoder("depth", "anchor-image")
class AnchorImageDepthEncoder(Encoder):
    """Disparity rendered as a 3-channel gray image through the frozen anchor image tower (zero-shot)."""

    Config = AnchorImageDepthConfig

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"disparity", "valid"}`` ``[B, 1, S, S]`` -> ``[B, D]`` image-tower features."""
        pixels = disparity_image(batch).expand(-1, 3, -1, -1)
        if self.config.normalize_pixels:
            preprocess = self.anchor.image_preprocess
            mean = torch.tensor(preprocess.mean, device=pixels.device).view(1, 3, 1, 1)
            std = torch.tensor(preprocess.std, device=pixels.device).view(1, 3, 1, 1)
            pixels = (pixels - mean) / std
        return self.anchor.encode_image(pixels)


@dataclass(frozen=True)
class DepthCNNConfig:
    """``encoder_args`` of the trainable depth ``cnn`` encoder."""

    channels: tuple[int, ...] = (16, 32, 64)  # output channels of each stride-2 conv block
    hidden_dim: int | None = None  # head MLP width (None: a single linear layer)
    dropout: float = 0.0  # head dropout


@register_encoder("depth", "cnn")
class DepthCNNEncoder(Encoder):
    """A small CNN over (scaled disparity, validity mask) + a projection `head` into the anchor space."""

    Config = DepthCNNConfig

    def __init__(self, config: DepthCNNConfig, context: EncoderContext) -> None:
        super().__init__(config, context)
        layers: list[nn.Module] = []
        width = 2  # disparity scaled to [0, 1] and the validity mask
        for channels in config.channels:
            layers += [nn.Conv2d(width, channels, 3, stride=2, padding=1), nn.GroupNorm(1, channels), nn.GELU()]
            width = channels
        self.backbone = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = ProjectionHead(width, context.dim, config.hidden_dim, config.dropout)

    splits_head = True

    def backbone_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"disparity", "valid"}`` ``[B, 1, S, S]`` -> ``[B, channels[-1]]`` pooled CNN features."""
        return self.backbone(torch.cat([disparity_image(batch), batch["valid"]], dim=1))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, channels[-1]]`` -> ``[B, D]``."""
        return self.head(features)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"disparity", "valid"}`` ``[B, 1, S, S]`` -> ``[B, D]``."""
        return self.forward_head(self.backbone_features(batch))
