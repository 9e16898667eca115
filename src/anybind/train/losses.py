"""Contrastive losses between modality vectors and frozen anchor vectors, with a learnable scale.

`ContrastiveLoss` owns the learnable logit scale (stored as its log, like CLIP) and delegates
the math to open_clip's `ClipLoss` (symmetric InfoNCE) or `SigLipLoss`. Under DDP the features
of every rank are gathered with gradients, so each rank sees the whole global batch as
negatives and the loss equals a single-process run on that global batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from anybind.anchor import CLIP_INIT_LOGIT_SCALE
from anybind.errors import InputError
from anybind.train.config import SIGLIP_INIT_LOGIT_BIAS, SIGLIP_INIT_LOGIT_SCALE, LossConfig


class ContrastiveLoss(nn.Module):
    """Symmetric InfoNCE (CLIP) or sigmoid (SigLIP) loss with a learnable, clamped logit scale.

    `forward(features, anchor_features)` takes two ``[B, D]`` unit-norm batches whose rows
    are positive pairs and returns a scalar. The logit scale starts at `config.init_logit_scale`
    (CLIP: 1/0.07; SigLIP: 10) and `clamp_` keeps it <= `config.max_logit_scale` (CLIP: 100).
    """

    def __init__(self, config: LossConfig, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        from open_clip.loss import ClipLoss, SigLipLoss

        self.config = config
        siglip = config.kind == "siglip"
        init = config.init_logit_scale or (SIGLIP_INIT_LOGIT_SCALE if siglip else CLIP_INIT_LOGIT_SCALE)
        if not 0 < init <= config.max_logit_scale:
            raise InputError(f"`loss.init_logit_scale`: expected a value in (0, {config.max_logit_scale}], got {init}")
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(init)), requires_grad=config.learn_logit_scale)
        if siglip:
            bias = SIGLIP_INIT_LOGIT_BIAS if config.init_logit_bias is None else config.init_logit_bias
            self.logit_bias: nn.Parameter | None = nn.Parameter(torch.tensor(float(bias)))
            self.loss: nn.Module = SigLipLoss(rank=rank, world_size=world_size, dist_impl="gather")
        else:
            self.logit_bias = None
            self.loss = ClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=world_size)

    @property
    def logit_scale(self) -> float:
        """The current logit scale (1 / temperature)."""
        return float(self.log_logit_scale.detach().exp())

    def forward(self, features: torch.Tensor, anchor_features: torch.Tensor) -> torch.Tensor:
        """Loss of ``[B, D]`` `features` against their ``[B, D]`` `anchor_features` (rows pair up)."""
        scale = self.log_logit_scale.exp()
        if self.logit_bias is not None:
            return self.loss(features, anchor_features, scale, self.logit_bias)
        return self.loss(features, anchor_features, scale)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp the logit scale to ``[1, max_logit_scale]`` (call after each optimizer step)."""
        self.log_logit_scale.clamp_(0.0, math.log(self.config.max_logit_scale))

