"""Point-cloud encoders. ``projection``: depth views through the anchor's frozen image tower."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from anybind.errors import ConfigError, InputError
from anybind.modalities.pointcloud.config import PointCloudPreprocess
from anybind.modalities.pointcloud.projection import method_views, project_to_views
from anybind.modality import Encoder, EncoderContext, float32_region
from anybind.registry import register_encoder


@dataclass(frozen=True)
class ProjectionEncoderConfig:
    """``encoder_args`` of the ``projection`` encoder."""

    method: Literal["pointclip", "realistic"] = "realistic"  # PointCLIP V1 or V2 projection
    views: tuple[int, ...] | None = None  # view indices of the method; None = all of them
    view_weights: tuple[float, ...] | None = None  # fusion weight per selected view; None = uniform
    # Apply the anchor's pixel mean/std to the views. Off by default: PointCLIP V1 and V2 feed
    # the raw depth images to CLIP without it.
    normalize_pixels: bool = False
    resolution: int | None = None  # projection grid side; None = the method's (128 V1, 112 V2)
    adapter: bool = False  # trainable inter-view adapter (PointCLIP's few-shot design), zero-init
    adapter_hidden: int | None = None  # hidden width of the adapter (default: the anchor width D)
    adapter_dropout: float = 0.0


class InterViewAdapter(nn.Module):
    """Inter-view adapter in the spirit of PointCLIP's: all views -> one global feature -> a
    per-view residual. The last layer starts at zero, so an untrained adapter is the identity
    and the encoder stays exactly zero-shot until the adapter is trained."""

    def __init__(self, views: int, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.views, self.dim = views, dim
        self.global_feature = nn.Sequential(
            nn.LayerNorm(views * dim), nn.Dropout(dropout), nn.Linear(views * dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.residual = nn.Linear(hidden, views * dim)
        nn.init.zeros_(self.residual.weight)
        nn.init.zeros_(self.residual.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, V, D]`` per-view features -> ``[B, V, D]`` adapted features (features + residual)."""
        residual = self.residual(self.global_feature(features.flatten(1)))
        return features + residual.view_as(features)


@register_encoder("pointcloud", "projection")
class ProjectionEncoder(Encoder):
    """Point clouds as depth views through the frozen anchor image tower, fused over views.

    All views of a batch go through the image tower in one forward; per-view features are
    L2-normalized, optionally adapted (`head`, the trainable inter-view adapter), and fused as a
    weighted sum with `view_weights` (uniform by default). Zero-shot when `adapter` is off or untrained.
    """

    Config = ProjectionEncoderConfig

    def __init__(self, config: ProjectionEncoderConfig, context: EncoderContext) -> None:
        super().__init__(config, context)
        preprocess: PointCloudPreprocess = context.preprocess
        where = "`modalities.pointcloud.encoder_args`"
        total = len(method_views(config.method, preprocess).view_angles)
        if config.views is not None and (not config.views or any(not 0 <= v < total for v in config.views)):
            raise ConfigError(f"{where}: `views` must be view indices in [0, {total - 1}] for method "
                              f"{config.method!r}, got {list(config.views)}")
        count = len(config.views) if config.views is not None else total
        weights = torch.ones(count) if config.view_weights is None else torch.tensor(config.view_weights)
        if weights.numel() != count or bool((weights < 0).any()) or not float(weights.sum()) > 0:
            raise ConfigError(f"{where}: `view_weights` must be {count} non-negative numbers (one per view) with a "
                              f"positive sum, got {config.view_weights}")
        self.num_views = count
        self.register_buffer("view_weights", weights / weights.sum(), persistent=False)
        self.head: InterViewAdapter | None = None
        if config.adapter:
            self.head = InterViewAdapter(count, context.dim, config.adapter_hidden or context.dim, config.adapter_dropout)

    def set_view_weights(self, weights: list[float] | tuple[float, ...] | torch.Tensor) -> None:
        """Replace the fusion weights (e.g. with `tune_view_weights`'s result); normalized to sum 1."""
        values = torch.as_tensor(weights, dtype=torch.float32).flatten()
        if values.numel() != self.num_views or bool((values < 0).any()) or not float(values.sum()) > 0:
            raise InputError(f"`weights`: expected {self.num_views} non-negative numbers with a positive sum, "
                             f"got {values.tolist()}")
        self.view_weights = (values / values.sum()).to(self.view_weights.device)

    def render(self, points: torch.Tensor) -> torch.Tensor:
        """``[B, N, 3]`` clouds -> ``[B·V, 3, S, S]`` pixels for the anchor's image tower."""
        pixels = self.context.anchor.image_preprocess
        with float32_region(points.device):
            images = project_to_views(points.float(), self.config.method, self.config.views, self.config.resolution,
                                      size=pixels.size, config=self.context.preprocess)
        images = images.reshape(-1, *images.shape[2:])
        if self.config.normalize_pixels:
            mean = torch.tensor(pixels.mean, device=images.device).view(1, 3, 1, 1)
            std = torch.tensor(pixels.std, device=images.device).view(1, 3, 1, 1)
            images = (images - mean) / std
        return images

    def view_features(self, points: torch.Tensor) -> torch.Tensor:
        """``[B, N, 3]`` clouds -> ``[B, V, D]`` unit-norm per-view features (after the adapter, if any)."""
        return self._adapt(self.backbone_features(points))

    @property
    def splits_head(self) -> bool:  # type: ignore[override]
        """The adapter (the head) can be trained on cached per-view features of the frozen image tower."""
        return self.head is not None

    def backbone_features(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, N, 3]`` clouds -> ``[B, V, D]`` unit-norm per-view features of the frozen image tower."""
        features = self.anchor.encode_image(self.render(batch)).float()
        return F.normalize(features.view(batch.shape[0], self.num_views, -1), dim=-1)

    def _adapt(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(features), dim=-1) if self.head is not None else features

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, V, D]`` per-view features -> ``[B, D]`` (adapter, then the view-weighted sum)."""
        return torch.einsum("bvd,v->bd", self._adapt(features), self.view_weights.to(features.device))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``[B, N, 3]`` clouds -> ``[B, D]`` view-weighted sum of per-view features."""
        return self.forward_head(self.backbone_features(batch))
