"""A lean inference pass over laion_clap's HTS-AT Swin stages, on their own parameters.

laion_clap's Swin blocks (Liu et al. 2021, "Swin Transformer") cyclically shift the token grid
with ``torch.roll``, cut it into windows with reshapes, gather the relative position bias on
every call, and (in eval mode) return and stack every attention map. This pass computes the
same function with fewer copies: the shift and the window partition become one precomputed
token permutation (and its inverse), the bias and shift mask are added inside PyTorch's fused
``scaled_dot_product_attention``, and no attention map is kept. Used only in eval mode
(drop-path and dropout are identities there); training uses laion_clap's own forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WindowOrder:
    """Token permutations of one Swin block: grid order -> shifted-window order, and back."""

    def __init__(self, height: int, width: int, window: int, shift: int, device: torch.device) -> None:
        grid = torch.arange(height * width, device=device).view(height, width)
        if shift:
            grid = torch.roll(grid, shifts=(-shift, -shift), dims=(0, 1))
        self.forward = grid.view(height // window, window, width // window, window).permute(0, 2, 1, 3).reshape(-1)
        self.inverse = torch.argsort(self.forward)


def _attention_bias(block: nn.Module) -> torch.Tensor:
    """``[1 or windows, heads, N, N]`` relative position bias plus the shifted-window mask."""
    attn = block.attn
    tokens = block.window_size * block.window_size
    bias = attn.relative_position_bias_table.index_select(0, attn.relative_position_index.view(-1))
    bias = bias.view(tokens, tokens, -1).permute(2, 0, 1).unsqueeze(0)
    if block.attn_mask is not None:
        bias = bias + block.attn_mask.unsqueeze(1).to(bias.dtype)
    return bias


def swin_block(block: nn.Module, x: torch.Tensor, order: WindowOrder) -> torch.Tensor:
    """One laion_clap ``SwinTransformerBlock`` in eval mode: ``[B, L, C]`` -> ``[B, L, C]``."""
    batch, length, channels = x.shape
    attn = block.attn
    heads, tokens = attn.num_heads, block.window_size * block.window_size
    windows = length // tokens
    tokens_in_windows = block.norm1(x).index_select(1, order.forward).view(batch * windows, tokens, channels)
    qkv = attn.qkv(tokens_in_windows).view(batch * windows, tokens, 3, heads, channels // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    bias = _attention_bias(block).to(q.dtype)
    if bias.shape[0] > 1:
        bias = bias.repeat(batch, 1, 1, 1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=attn.scale)
    out = attn.proj(out.transpose(1, 2).reshape(batch * windows, tokens, channels))
    x = x + out.view(batch, length, channels).index_select(1, order.inverse)
    return x + block.mlp(block.norm2(x))


class SwinInference:
    """Runs the Swin stages of a laion_clap HTS-AT in eval mode, caching the window orders per block."""

    def __init__(self) -> None:
        self._orders: dict[int, WindowOrder] = {}

    def _order(self, block: nn.Module, device: torch.device) -> WindowOrder:
        order = self._orders.get(id(block))
        if order is None or order.forward.device != device:
            height, width = block.input_resolution
            order = WindowOrder(height, width, block.window_size, block.shift_size, device)
            self._orders[id(block)] = order
        return order

    def __call__(self, layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, C]`` patch tokens through every stage (blocks, then patch merging)."""
        for layer in layers:
            for block in layer.blocks:
                x = swin_block(block, x, self._order(block, x.device))
            if layer.downsample is not None:
                x = layer.downsample(x)
        return x
