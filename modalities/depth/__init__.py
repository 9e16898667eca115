"""The ``depth`` modality: depth maps as disparity (ImageBind's recipe), invalid pixels masked.

Inputs: 16-bit PNGs in millimetres, ``.npy`` / float arrays in metres, uint16 arrays in
millimetres, or disparity (``kind="disparity"``). Camera constants come from a preset
(``camera="kinect"`` or ``"realsense"``, see ``configs/preprocess/depth/default.yaml``) or
explicit ``focal_length=`` (pixels) and ``baseline=`` (metres).
Encoders: ``anchor-image`` (zero-shot through the frozen image tower), ``cnn`` (trainable) and
``imagebind`` (ImageBind's depth tower; preprocess ``imagebind``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anybind.errors import InputError
from anybind.modalities.depth.config import DepthPreprocess as DepthPreprocess
from anybind.modalities.depth.conversion import (
    ACCEPTS,
    clean_disparity,
    depth_to_disparity,
    masked_resize,
    read_depth_file,
    to_float_map,
)
from anybind.modalities.depth.encoders import AnchorImageDepthEncoder as AnchorImageDepthEncoder
from anybind.modalities.depth.encoders import DepthCNNEncoder as DepthCNNEncoder
from anybind.modalities.depth.imagebind import ImageBindDepthEncoder as ImageBindDepthEncoder
from anybind.modality import Modality
from anybind.registry import register_modality

LOAD_OPTIONS = ("kind", "camera", "focal_length", "baseline")


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise InputError(f"`{name}`: expected a positive number, got {value!r}")
    return float(value)


@register_modality("depth")
class DepthModality(Modality):
    """Depth maps -> ``{"disparity": [B, 1, S, S], "valid": [B, 1, S, S]}`` float32 batches.

    Loader options: `kind` ("depth" default, or "disparity"), `camera` (preset name),
    `focal_length` (pixels) and `baseline` (metres) overriding the preset.
    """

    accepts = ACCEPTS
    Preprocess = DepthPreprocess
    default_preprocess = "default"
    default_encoder = "anchor-image"
    default_batch_size = 32
    default_templates = "depth"

    item_ndim = 2  # an [H, W] map; [B, H, W] is B maps

    def load(self, items: Sequence[Any], **options: Any) -> dict[str, torch.Tensor]:
        """Items -> masked, resized disparity maps and their validity masks (CPU)."""
        unknown = sorted(set(options) - set(LOAD_OPTIONS))
        if unknown:
            raise InputError(f"depth inputs take options {', '.join(LOAD_OPTIONS)}; got unknown {', '.join(unknown)}")
        preprocess: DepthPreprocess = self.preprocess
        kind = options.get("kind", "depth")
        if kind not in ("depth", "disparity"):
            raise InputError(f"`kind`: expected 'depth' or 'disparity', got {kind!r}")
        camera = preprocess.camera(options.get("camera") or preprocess.default_camera)
        focal = _positive(options.get("focal_length", camera.focal_length), "focal_length")
        baseline = _positive(options.get("baseline", camera.baseline), "baseline")
        size = preprocess.size or self.anchor.image_preprocess.size
        maps, masks = [], []
        for index, item in enumerate(items):
            argument = f"inputs[{index}]"
            raw = item if isinstance(item, (np.ndarray, torch.Tensor)) else (
                read_depth_file(item, argument) if isinstance(item, (str, Path)) or hasattr(item, "__fspath__")
                else item)
            values = to_float_map(raw, argument, preprocess.png_depth_scale, kind)
            if kind == "depth" and preprocess.holes == "min_depth":
                values = np.where(values == 0, preprocess.min_depth, values)
            if kind == "depth":
                disparity, valid = depth_to_disparity(values, focal_length=focal, baseline=baseline,
                                                      min_depth=preprocess.min_depth, max_depth=preprocess.max_depth,
                                                      argument=argument)
            else:
                disparity, valid = clean_disparity(values, argument)
            resized, resized_valid = masked_resize(torch.from_numpy(disparity).float(), torch.from_numpy(valid),
                                                   size, preprocess.interpolation)
            maps.append(resized)
            masks.append(resized_valid)
        return {"disparity": torch.stack(maps)[:, None], "valid": torch.stack(masks)[:, None].float()}
