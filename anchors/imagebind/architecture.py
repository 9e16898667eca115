"""ImageBind's towers written from the paper and the official state-dict layout (not its code).

Every modality is a pre-norm ViT-style transformer over tokens from a modality *stem*:

    tokens = [cls] + stem(input)  (+ learned positions)  -> transformer blocks -> LayerNorm
          -> token 0 (text: the end-of-text token) -> linear projection (no bias) -> out_dim

Stems: vision is a 14x14 patch conv (the official Conv3d over two repeated frames, folded
into a Conv2d; see `fold_video_stem`); audio a 16x16 conv with stride 10 over the 128 x 204
log-mel image; depth and thermal 16x16 patch convs over one channel; IMU a linear map of
6 x 8 sample patches. Audio, depth, thermal and IMU stems end in a LayerNorm and their
attention layers have learned key/value bias tokens (``add_bias_kv``); vision has a LayerNorm
before the first block; text uses a causal mask. Sizes come from `ImageBindArchitecture`
(``configs/anchors/imagebind/*.yaml``), never from this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

LAYER_NORM_EPS = 1e-6  # every LayerNorm of the trunks and heads (the stems' norms use torch's 1e-5)


@dataclass(frozen=True)
class TowerSize:
    """Width, depth and attention heads of one modality's transformer."""

    width: int  # token width
    blocks: int  # transformer blocks
    heads: int  # attention heads (width must be divisible by it)


@dataclass(frozen=True)
class ImageBindArchitecture:
    """All sizes of an ImageBind model (``configs/anchors/imagebind/<name>.yaml``)."""

    out_dim: int  # the shared embedding width D
    vision: TowerSize
    text: TowerSize
    audio: TowerSize
    depth: TowerSize
    thermal: TowerSize
    imu: TowerSize
    image_size: int = 224  # vision, depth and thermal input side, pixels
    vision_patch: int = 14  # vision patch side
    text_context: int = 77  # text tokens (CLIP BPE)
    text_vocab: int = 49408
    audio_mel_bins: int = 128  # the audio "image": mel bins x frames
    audio_frames: int = 204
    audio_patch: int = 16  # audio conv kernel
    audio_stride: int = 10  # audio conv stride (overlapping patches)
    depth_patch: int = 16
    thermal_patch: int = 16
    imu_channels: int = 6  # accelerometer xyz + gyroscope xyz
    imu_length: int = 2000  # samples per IMU input
    imu_patch: int = 8  # samples per IMU token
    mlp_ratio: int = 4
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)  # CLIP's pixel mean, as ImageBind
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)  # CLIP's pixel std
    version: int = 1

    def tower(self, modality: str) -> TowerSize:
        """The `TowerSize` of `modality` (``vision``, ``text``, ``audio``, ``depth``, ``thermal``, ``imu``)."""
        return getattr(self, modality)  # type: ignore[no-any-return]


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm_1(x))``, then ``x + mlp(norm_2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, bias_kv: bool) -> None:
        super().__init__()
        self.norm_1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.attn = nn.MultiheadAttention(width, heads, bias=True, add_bias_kv=bias_kv, batch_first=True)
        self.norm_2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(width, width * mlp_ratio))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(width * mlp_ratio, width))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``[B, L, W]`` -> ``[B, L, W]``; `mask` is an additive ``[L, L]`` attention mask or None."""
        normed = self.norm_1(tokens)
        tokens = tokens + self.attn(normed, normed, normed, need_weights=False, attn_mask=mask)[0]
        return tokens + self.mlp(self.norm_2(tokens))


class Trunk(nn.Module):
    """A stack of `Block` with an optional LayerNorm in front (the vision trunk has one)."""

    def __init__(self, size: TowerSize, mlp_ratio: int, *, pre_norm: bool, bias_kv: bool) -> None:
        super().__init__()
        self.pre_norm = nn.LayerNorm(size.width, eps=LAYER_NORM_EPS) if pre_norm else nn.Identity()
        self.blocks = nn.ModuleList(Block(size.width, size.heads, mlp_ratio, bias_kv) for _ in range(size.blocks))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, W]`` tokens -> ``[B, L, W]``."""
        tokens = self.pre_norm(tokens)
        for block in self.blocks:
            tokens = block(tokens, mask)
        return tokens


class Head(nn.Module):
    """LayerNorm, then the pooled token projected to `out_dim` without bias."""

    def __init__(self, width: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.proj = nn.Linear(width, out_dim, bias=False)

    def forward(self, tokens: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, W]`` -> ``[B, out_dim]`` from token 0, or from token ``index[b]`` of each row."""
        pooled = tokens[:, 0] if index is None else tokens[torch.arange(tokens.shape[0], device=tokens.device), index]
        return self.proj(self.norm(pooled))


StemKind = Literal["vision", "audio", "depth", "thermal", "imu"]


class PatchTower(nn.Module):
    """A non-text ImageBind tower: stem -> [cls] + positions -> trunk -> head -> ``[B, out_dim]``.

    Inputs: vision ``[B, 3, S, S]`` normalized pixels; audio ``[B, 1, mel_bins, frames]``
    normalized log-mel; depth and thermal ``[B, 1, S, S]``; IMU ``[B, channels, length]``.
    """

    def __init__(self, kind: StemKind, arch: ImageBindArchitecture) -> None:
        super().__init__()
        size = arch.tower(kind)
        self.kind = kind
        width = size.width
        if kind == "imu":
            self.imu_patch = arch.imu_patch
            self.stem: nn.Module = nn.Linear(arch.imu_channels * arch.imu_patch, width, bias=False)
            tokens = arch.imu_length // arch.imu_patch
        elif kind == "vision":
            self.stem = nn.Conv2d(3, width, arch.vision_patch, stride=arch.vision_patch, bias=False)
            tokens = (arch.image_size // arch.vision_patch) ** 2
        elif kind == "audio":
            self.stem = nn.Conv2d(1, width, arch.audio_patch, stride=arch.audio_stride, bias=False)
            rows = (arch.audio_mel_bins - arch.audio_patch) // arch.audio_stride + 1
            cols = (arch.audio_frames - arch.audio_patch) // arch.audio_stride + 1
            tokens = rows * cols
        else:
            patch = arch.depth_patch if kind == "depth" else arch.thermal_patch
            self.stem = nn.Conv2d(1, width, patch, stride=patch, bias=False)
            tokens = (arch.image_size // patch) ** 2
        self.stem_norm = nn.LayerNorm(width) if kind != "vision" else nn.Identity()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, width))
        nn.init.normal_(self.cls_token, std=width ** -0.5)
        nn.init.normal_(self.pos_embed, std=width ** -0.5)
        self.trunk = Trunk(size, arch.mlp_ratio, pre_norm=kind == "vision", bias_kv=kind != "vision")
        self.head = Head(width, arch.out_dim)

    def tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        """Input -> ``[B, patches, width]`` stem tokens (before the cls token and positions)."""
        if self.kind == "imu":
            batch, channels, length = inputs.shape
            # [B, C, L] -> [B, L/p, C*p]: each token holds p consecutive samples of every channel, channel-major.
            patches = inputs.reshape(batch, channels, length // self.imu_patch, self.imu_patch)
            tokens = self.stem(patches.permute(0, 2, 1, 3).reshape(batch, length // self.imu_patch, -1))
        else:
            tokens = self.stem(inputs).flatten(2).transpose(1, 2)
        return self.stem_norm(tokens)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Input batch (see class docstring) -> ``[B, out_dim]`` features (not normalized)."""
        tokens = self.tokens(inputs)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        return self.head(self.trunk(tokens))


class TextTower(nn.Module):
    """CLIP-style text tower: token + position embeddings, causal trunk, head on the end-of-text token."""

    def __init__(self, arch: ImageBindArchitecture) -> None:
        super().__init__()
        width = arch.text.width
        self.token_embedding = nn.Embedding(arch.text_vocab, width)
        self.pos_embed = nn.Parameter(torch.zeros(1, arch.text_context, width))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)
        causal = torch.full((arch.text_context, arch.text_context), float("-inf")).triu(1)
        self.register_buffer("causal_mask", causal, persistent=False)
        self.trunk = Trunk(arch.text, arch.mlp_ratio, pre_norm=False, bias_kv=False)
        self.head = Head(width, arch.out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, context]`` token ids -> ``[B, out_dim]``; pools the highest id (end-of-text) position."""
        hidden = self.token_embedding(tokens) + self.pos_embed
        hidden = self.trunk(hidden, self.causal_mask.to(hidden.dtype))
        return self.head(hidden, tokens.argmax(dim=-1))


def fold_video_stem(weight: torch.Tensor) -> torch.Tensor:
    """The official vision stem ``[W, 3, T, p, p]`` (a Conv3d over an image repeated T times) as
    the equivalent Conv2d kernel ``[W, 3, p, p]``: the sum over time."""
    return weight.sum(dim=2)
