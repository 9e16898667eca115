"""The ``image`` modality, served by the anchor's frozen image tower.

Accepts file paths, PIL images, ``[H, W, 3]`` / ``[H, W]`` uint8 arrays, and float tensors
``[3, H, W]`` (or a ``[N, 3, H, W]`` batch) with values in [0, 1]. Preprocessing is the
anchor's own (size, mean, std, interpolation), read from its weights/config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from anybind.anchor import ImagePreprocess
from anybind.errors import InputError, InputFileError
from anybind.modality import Encoder, Modality, NoConfig, check_file, check_finite, describe
from anybind.registry import register_encoder, register_modality


def _pil_transform(preprocess: ImagePreprocess) -> Any:
    """open_clip's eval transform for these constants (parity with open_clip on PIL input)."""
    from open_clip.transform import image_transform

    return image_transform(preprocess.size, is_train=False, mean=preprocess.mean, std=preprocess.std,
                           resize_mode=preprocess.resize_mode, interpolation=preprocess.interpolation)


def tensor_transform(pixels: torch.Tensor, preprocess: ImagePreprocess) -> torch.Tensor:
    """``[B, 3, H, W]`` float pixels in [0, 1] -> ``[B, 3, S, S]`` resized, center-cropped, normalized."""
    import torchvision.transforms.v2.functional as F
    from torchvision.transforms import InterpolationMode

    mode = InterpolationMode(preprocess.interpolation)
    if preprocess.resize_mode == "squash" or pixels.shape[-2:] == (preprocess.size, preprocess.size):
        pixels = F.resize(pixels, [preprocess.size, preprocess.size], interpolation=mode, antialias=True)
    else:
        pixels = F.resize(pixels, preprocess.size, interpolation=mode, antialias=True)
        pixels = F.center_crop(pixels, [preprocess.size, preprocess.size])
    return F.normalize(pixels, list(preprocess.mean), list(preprocess.std))


def load_image_file(item: Any, argument: str) -> Image.Image:
    """Open an image file in its own mode (RGBA stays RGBA); raise `InputFileError` naming `argument`
    if missing or corrupt. The conversion to RGB happens after the resize, as in open_clip."""
    path = check_file(item, argument, "an image")
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.copy()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputFileError(f"`{argument}`: {str(path)!r} is not a readable image ({error})") from None


@register_modality("image")
class ImageModality(Modality):
    """Images through the anchor's image tower."""

    accepts = ("image file paths, PIL images, [H, W, 3] uint8 arrays, or float tensors [3, H, W] / [N, 3, H, W] "
               "in [0, 1]")
    default_encoder = "anchor"
    default_batch_size = 64
    default_templates = "image"
    item_ndim = 3  # [3, H, W] float tensor or [H, W, 3] uint8 array; [N, ...] is a batch

    @classmethod
    def resolve_preprocess(cls, spec: Any, anchor: Any) -> ImagePreprocess:
        """Images always use the anchor's own preprocessing."""
        return anchor.image_preprocess

    def load(self, items: Sequence[Any], **options: Any) -> torch.Tensor:
        """Items -> ``[B, 3, S, S]`` normalized pixels."""
        if options:
            raise InputError(f"image inputs take no options, got {', '.join(sorted(options))}")
        pil_transform = None
        out = []
        for index, item in enumerate(items):
            argument = f"inputs[{index}]"
            if isinstance(item, torch.Tensor):
                out.append(self._from_tensor(item, argument))
                continue
            if isinstance(item, np.ndarray):
                item = self._array_to_pil(item, argument)
            elif not isinstance(item, Image.Image):
                if not isinstance(item, (str, bytes)) and not hasattr(item, "__fspath__"):
                    raise InputError(f"`{argument}`: expected {self.accepts}; got {describe(item)}")
                item = load_image_file(item, argument)
            pil_transform = pil_transform or _pil_transform(self.preprocess)
            # open_clip's transform converts to RGB after resize and crop; Pillow resamples RGBA with
            # premultiplied alpha, so converting first (as anybind once did) differs by up to ~3e-2.
            out.append(pil_transform(item).unsqueeze(0))
        return torch.cat(out)

    def _array_to_pil(self, array: np.ndarray, argument: str) -> Image.Image:
        if array.dtype != np.uint8:
            raise InputError(f"`{argument}`: expected a uint8 array (or a float tensor in [0, 1]), got dtype {array.dtype}")
        if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
            return Image.fromarray(array)
        raise InputError(f"`{argument}`: expected a [H, W] or [H, W, 3] uint8 array, got shape {tuple(array.shape)}")

    def _from_tensor(self, tensor: torch.Tensor, argument: str) -> torch.Tensor:
        shape = tuple(tensor.shape)
        if tensor.ndim == 3:
            tensor = tensor.unsqueeze(0)
        if tensor.ndim != 4 or tensor.shape[1] != 3:
            raise InputError(f"`{argument}`: expected a float tensor [3, H, W] or [N, 3, H, W], got shape {shape}")
        if not tensor.is_floating_point():
            raise InputError(f"`{argument}`: expected a float tensor in [0, 1], got dtype {tensor.dtype}")
        if min(tensor.shape[-2:]) < 1:
            raise InputError(f"`{argument}`: image has zero size {tuple(tensor.shape)}")
        check_finite(tensor, argument)
        return tensor_transform(tensor.float().cpu(), self.preprocess)


@register_encoder("image", "anchor")
class AnchorImageEncoder(Encoder):
    """The anchor's frozen image tower (no trainable parameters)."""

    Config = NoConfig

    def forward(self, batch: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.anchor.encode_image(batch)
