"""The depth ``imagebind`` encoder: ImageBind's depth tower on ``[B, 1, 224, 224]`` disparity."""

from __future__ import annotations

import torch

from anybind.anchors.imagebind import ImageBindTowerEncoder
from anybind.errors import ConfigError
from anybind.modality import EncoderContext, NoConfig
from anybind.registry import register_encoder


@register_encoder("depth", "imagebind")
class ImageBindDepthEncoder(ImageBindTowerEncoder):
    """ImageBind's depth tower (from the ``imagebind`` anchor's checkpoint) on raw disparity in pixels."""

    Config = NoConfig
    tower_modality = "depth"

    def __init__(self, config: NoConfig, context: EncoderContext) -> None:
        super().__init__(config, context)
        size = context.preprocess.size or context.anchor.image_preprocess.size
        if size != context.anchor.architecture.image_size:  # type: ignore[attr-defined]
            raise ConfigError(f"`modalities.depth.preprocess`: the imagebind depth tower takes "
                              f"{context.anchor.architecture.image_size} px maps, the preprocess gives {size} px")  # type: ignore[attr-defined]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"disparity", "valid"}`` ``[B, 1, S, S]`` -> ``[B, D]`` (invalid pixels enter as 0)."""
        return self.tower(batch["disparity"] * batch["valid"])
