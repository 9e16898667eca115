"""The ``depth`` modality: depth maps as disparity (ImageBind's recipe), invalid pixels masked.

Inputs: 16-bit PNGs in millimetres (``format="sunrgbd"``: SUN RGB-D's bit-rotated PNGs), ``.npy`` /
float arrays in metres, uint16 arrays in millimetres, or disparity (``kind="disparity"``). Holes
(depth 0) follow the preprocess config's ``holes`` ("clip", the paper's recipe, or "mask"). Camera constants come from a preset
(``camera="kinect"`` or ``"realsense"``, see ``configs/preprocess/depth/default.yaml``) or
explicit ``focal_length=`` (pixels) and ``baseline=`` (metres).
Encoders: ``anchor-image`` (zero-shot through the frozen image tower), ``cnn`` (trainable) and
``imagebind`` (ImageBind's depth tower; preprocess ``imagebind``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from anybind.errors import InputError
from anybind.modalities.depth.config import DepthPreprocess as DepthPreprocess
from anybind.modalities.depth.conversion import (
    ACCEPTS,
    DEPTH_FORMATS,
    HOLE_MODES,
    clean_disparity,
    decode_sunrgbd,
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

LOAD_OPTIONS = ("kind", "camera", "focal_length", "baseline", "format")
MAX_CHANNEL_AXIS = 4  # a last axis this short is channels (gray/RGB/RGBA), never a map's width


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise InputError(f"`{name}`: expected a positive number, got {value!r}")
    return float(value)


@register_modality("depth")
class DepthModality(Modality):
    """Depth maps -> ``{"disparity": [B, 1, S, S], "valid": [B, 1, S, S]}`` float32 batches.

    Loader options: `kind` ("depth" default, or "disparity"), `camera` (preset name),
    `focal_length` (pixels) and `baseline` (metres) overriding the preset, `format` of 16-bit
    depth ("mm" default, or "sunrgbd" for SUN RGB-D's bit-rotated PNGs).
    """

    accepts = ACCEPTS
    Preprocess = DepthPreprocess
    default_preprocess = "default"
    default_encoder = "anchor-image"
    default_templates = "depth"

    item_ndim = 2  # an [H, W] map; [B, H, W] is B maps
    deterministic_load = True  # no augmentation: the trainer caches loaded inputs

    batch_rule = ("one array is one [H, W] map; several maps are a list, or a [B, H, W] array; an array whose "
                  f"last axis has at most {MAX_CHANNEL_AXIS} entries looks like [H, W, channels] and needs batched=")

    def array_layout(self, shape: tuple[int, ...]) -> Literal["item", "batch"] | None:
        """``[H, W]`` is one map, ``[B, H, W]`` a batch; ``[H, W, C]`` with a small last axis (an image-like
        array, e.g. RGB-encoded depth) is ambiguous rather than split into H one-row maps."""
        if len(shape) == 3 and shape[0] != 1 and shape[-1] <= MAX_CHANNEL_AXIS:
            return None
        return super().array_layout(shape)

    def load(self, items: Sequence[Any], **options: Any) -> dict[str, torch.Tensor]:
        """Items -> masked, resized disparity maps and their validity masks (CPU)."""
        unknown = sorted(set(options) - set(LOAD_OPTIONS))
        if unknown:
            raise InputError(f"depth inputs take options {', '.join(LOAD_OPTIONS)}; got unknown {', '.join(unknown)}")
        preprocess: DepthPreprocess = self.preprocess
        kind = options.get("kind", "depth")
        if kind not in ("depth", "disparity"):
            raise InputError(f"`kind`: expected 'depth' or 'disparity', got {kind!r}")
        depth_format = options.get("format", "mm")
        if depth_format not in DEPTH_FORMATS:
            raise InputError(f"`format`: expected one of {', '.join(map(repr, DEPTH_FORMATS))}, got {depth_format!r}")
        if depth_format == "sunrgbd" and kind != "depth":
            raise InputError("`format`: 'sunrgbd' holds depth; it cannot be combined with kind='disparity'")
        if preprocess.holes not in HOLE_MODES:
            raise InputError(f"depth preprocess `holes`: expected one of {', '.join(map(repr, HOLE_MODES))}, "
                             f"got {preprocess.holes!r}")
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
            if depth_format == "sunrgbd":
                values = to_float_map(decode_sunrgbd(raw, argument, preprocess.sunrgbd_max_depth), argument,
                                      preprocess.png_depth_scale, kind)
            else:
                values = to_float_map(raw, argument, preprocess.png_depth_scale, kind)
            if kind == "depth":
                disparity, valid = depth_to_disparity(values, focal_length=focal, baseline=baseline,
                                                      min_depth=preprocess.min_depth, max_depth=preprocess.max_depth,
                                                      argument=argument, holes=preprocess.holes)  # type: ignore[arg-type]
            else:
                disparity, valid = clean_disparity(values, argument)
            resized, resized_valid = masked_resize(torch.from_numpy(disparity).float(), torch.from_numpy(valid),
                                                   size, preprocess.interpolation)
            maps.append(resized)
            masks.append(resized_valid)
        return {"disparity": torch.stack(maps)[:, None], "valid": torch.stack(masks)[:, None].float()}
