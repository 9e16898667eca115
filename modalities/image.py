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

# Decoding limits: a 40-megapixel RGB image decodes to 120 MB. Larger JPEGs are decoded at a
# reduced scale (JPEG's DCT scaling, which PIL's `draft` exposes); larger images of other
# formats are refused before decoding. An extreme aspect ratio would make the resize of the
# shorter side to the anchor's input size huge, so it is refused too.
MAX_IMAGE_PIXELS = 40_000_000
MAX_ASPECT_RATIO = 50


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


def check_image_size(width: int, height: int, argument: str, what: str = "image") -> None:
    """Raise `InputError` naming `argument` for a zero-size, too large or extremely elongated image."""
    if width < 1 or height < 1:
        raise InputError(f"`{argument}`: {what} has zero size ({width}x{height} pixels)")
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"`{argument}`: {what} is {width}x{height} = {width * height:,} pixels, more than the "
                         f"{MAX_IMAGE_PIXELS:,} anybind decodes (anybind.modalities.image.MAX_IMAGE_PIXELS); "
                         "downscale it first")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InputError(f"`{argument}`: {what} is {width}x{height} pixels, an aspect ratio above "
                         f"{MAX_ASPECT_RATIO}:1 (anybind.modalities.image.MAX_ASPECT_RATIO); crop it first")


def load_image_file(item: Any, argument: str) -> Image.Image:
    """Open an image file in its own mode (RGBA stays RGBA: the conversion to RGB happens after the
    resize, as in open_clip); raise `InputFileError` naming `argument` if missing, corrupt or too large.

    The size in the header is checked before decoding: a JPEG above `MAX_IMAGE_PIXELS` is
    decoded at a reduced scale, any other format above it is refused.
    """
    import warnings

    path = check_file(item, argument, "an image")
    what = f"image file {str(path)!r}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # anybind checks the size itself
            opened_file = Image.open(path)
        with opened_file as opened:
            width, height = opened.size
            if width * height > MAX_IMAGE_PIXELS and opened.format == "JPEG":
                # draft picks the strongest DCT reduction whose size is still >= the request, which is
                # below twice the request per side: asking for half the fitting size keeps it within the limit.
                scale = (MAX_IMAGE_PIXELS / (width * height)) ** 0.5 / 2
                opened.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
                width, height = opened.size
            size_error = _size_error(width, height, argument, what)
            if size_error is None:
                opened.load()
                return opened.copy()
    except Image.DecompressionBombError:  # PIL's own limit (twice Image.MAX_IMAGE_PIXELS) is far above ours
        size_error = (f"`{argument}`: {what} declares more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels, more than "
                      f"the {MAX_IMAGE_PIXELS:,} anybind decodes (anybind.modalities.image.MAX_IMAGE_PIXELS)")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InputFileError(f"`{argument}`: {str(path)!r} is not a readable image ({error})") from None
    raise InputFileError(size_error)


def _size_error(width: int, height: int, argument: str, what: str) -> str | None:
    try:
        check_image_size(width, height, argument, what)
    except InputError as error:
        return str(error)
    return None


PIXEL_TOLERANCE = 1e-3  # resampling/rounding may overshoot [0, 1] slightly


@register_modality("image")
class ImageModality(Modality):
    """Images through the anchor's image tower."""

    accepts = ("image file paths, PIL images, [H, W, 3] uint8 arrays, or float tensors [3, H, W] / [N, 3, H, W] "
               "in [0, 1]")
    default_encoder = "anchor"
    default_batch_size = 64
    default_templates = "image"
    item_ndim = 3  # [3, H, W] float tensor or [H, W, 3] uint8 array; [N, ...] is a batch
    batch_rule = ("one array is one image ([H, W] / [H, W, 3] uint8, [3, H, W] float in [0, 1]); several images "
                  "are a list or an [N, 3, H, W] / [N, H, W, 3] array")
    deterministic_load = True  # no augmentation: the trainer caches loaded inputs

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
            check_image_size(*item.size, argument)
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
        check_image_size(tensor.shape[-1], tensor.shape[-2], argument, f"image tensor of shape {shape}")
        check_finite(tensor, argument)
        low, high = float(tensor.min()), float(tensor.max())
        if low < -PIXEL_TOLERANCE or high > 1 + PIXEL_TOLERANCE:
            hint = ("divide 0..255 pixels by 255" if high > 2 else
                    "pass raw pixels, not mean/std-normalized ones: anybind normalizes with the anchor's constants")
            raise InputError(f"`{argument}`: expected a float tensor with values in [0, 1], got values in "
                             f"[{low:.4g}, {high:.4g}] ({hint})")
        return tensor_transform(tensor.float().cpu(), self.preprocess)


@register_encoder("image", "anchor")
class AnchorImageEncoder(Encoder):
    """The anchor's frozen image tower (no trainable parameters)."""

    Config = NoConfig

    def forward(self, batch: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.anchor.encode_image(batch)
