"""The ``thermal`` modality: single-channel thermal images -> anchor-space vectors.

Inputs: image files (8/16-bit grayscale PNG, TIFF, JPEG...), ``[H, W]`` arrays or tensors
(uint8 scaled by 1/255, uint16 by 1/65535, floats taken as [0, 1]), or a ``[B, H, W]`` batch.
A 3-channel file whose channels are identical (grayscale stored as RGB, as LLVIP's JPEGs are)
is read as its first channel; a 3-channel input with differing channels (a false-colour
rendering) is refused. Preprocessing: ``configs/preprocess/thermal/``. Encoder: ``imagebind``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from anybind.anchors.imagebind import ImageBindTowerEncoder
from anybind.errors import InputError, InputFileError
from anybind.modality import Modality, NoConfig, check_file, check_finite, describe
from anybind.registry import register_encoder, register_modality

ACCEPTS = ("single-channel thermal image files (8/16-bit PNG, TIFF, JPEG), [H, W] uint8/uint16/float arrays or "
           "tensors (floats in [0, 1]), or a [B, H, W] batch")
_INTEGER_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


@dataclass(frozen=True)
class ThermalPreprocess:
    """How thermal images are fed to the encoder (``configs/preprocess/thermal/*.yaml``)."""

    size: int  # square side, pixels
    mean: float  # subtracted after scaling to [0, 1]
    std: float  # divided after the mean
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bicubic"
    resize_mode: Literal["shortest", "squash"] = "shortest"  # shortest side to `size` + centre crop, or squash
    version: int = 1


def _single_channel(array: np.ndarray, argument: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputError(f"`{argument}`: expected a single-channel thermal image, got {array.shape[-1]} channels "
                             "that differ (a false-colour rendering?); pass the raw single-channel image")
        array = rgb[..., 0]
    if array.ndim != 2 or min(array.shape) < 1:
        raise InputError(f"`{argument}`: expected a [H, W] thermal image, got shape {tuple(array.shape)}")
    return array


def read_thermal_file(item: Any, argument: str) -> np.ndarray:
    """A thermal image file -> its ``[H, W]`` array (uint8, uint16 or float), see `_single_channel`."""
    from PIL import Image, UnidentifiedImageError

    path: Path = check_file(item, argument, "a thermal image")
    try:
        with Image.open(path) as image:
            image.load()
            array = np.array(image)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputFileError(f"`{argument}`: {str(path)!r} is not a readable image ({error})") from None
    if array.dtype == np.int32:  # PIL's "I" mode for 16-bit PNGs
        array = array.astype(np.uint16)
    return _single_channel(array, argument)


def to_unit_range(array: Any, argument: str) -> torch.Tensor:
    """A raw thermal image -> ``[H, W]`` float32 in [0, 1] (integers scaled by their full range)."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().float().numpy() if array.is_floating_point() else array.detach().cpu().numpy()
    if not isinstance(array, np.ndarray):
        raise InputError(f"`{argument}`: expected {ACCEPTS}; got {describe(array)}")
    array = _single_channel(array, argument)
    if array.dtype in _INTEGER_SCALE:
        return torch.from_numpy(array.astype(np.float32) / _INTEGER_SCALE[array.dtype])
    if array.dtype.kind != "f":
        raise InputError(f"`{argument}`: expected uint8, uint16 or float pixels, got dtype {array.dtype}")
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    check_finite(tensor, argument)
    return tensor


def resize_square(image: torch.Tensor, preprocess: ThermalPreprocess) -> torch.Tensor:
    """``[H, W]`` -> ``[1, size, size]``: shortest side resized then centre crop (or squashed)."""
    import torchvision.transforms.v2.functional as F
    from torchvision.transforms import InterpolationMode

    mode = InterpolationMode(preprocess.interpolation)
    size = preprocess.size
    if preprocess.resize_mode == "squash":
        return F.resize(image[None], [size, size], interpolation=mode, antialias=True)
    resized = F.resize(image[None], size, interpolation=mode, antialias=True)
    return F.center_crop(resized, [size, size])


@register_modality("thermal")
class ThermalModality(Modality):
    """Thermal (long-wave infrared) images as one channel (module docstring)."""

    accepts = ACCEPTS
    Preprocess = ThermalPreprocess
    default_preprocess = "imagebind"
    default_encoder = "imagebind"
    item_ndim = 2  # an [H, W] image; [B, H, W] is B images

    def load(self, items: Sequence[Any], **options: Any) -> torch.Tensor:
        """Items -> ``[B, 1, size, size]`` float32 normalized thermal images."""
        preprocess: ThermalPreprocess = self.preprocess
        out = []
        for raw, argument in self.read_items(items, options, read_thermal_file):
            image = resize_square(to_unit_range(raw, argument), preprocess)
            out.append((image - preprocess.mean) / preprocess.std)
        return torch.stack(out)


@register_encoder("thermal", "imagebind")
class ImageBindThermalEncoder(ImageBindTowerEncoder):
    """ImageBind's thermal tower (from the ``imagebind`` anchor's checkpoint)."""

    Config = NoConfig
    tower_modality = "thermal"
