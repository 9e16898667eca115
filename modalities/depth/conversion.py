"""Reading depth maps and turning them into disparity (ImageBind's recipe), masking invalid pixels.

ImageBind (Girdhar et al., CVPR 2023) feeds disparity, following Omnivore's SUN RGB-D recipe:
``disparity = baseline · focal_length / depth`` with depth in metres clipped to [0.01, 50].
Pixels without a measurement (0 or NaN) are holes. ``holes="clip"`` (the authors' recipe, the default)
clips them to 0.01 m like every other depth, so they get the maximal disparity and stay valid;
``holes="mask"`` marks them (and +inf) invalid with disparity 0.

SUN RGB-D stores depth PNGs bit-rotated: ``depth_mm = (v >> 3) | (v << 13)`` (16-bit), capped at
8 m (SUNRGBDtoolbox ``read3dPoints.m``); read as plain millimetres they come out 8× too deep.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from anybind.errors import InputError, InputFileError
from anybind.modality import check_file, describe

DepthKind = Literal["depth", "disparity"]
MAX_DEPTH_PIXELS = 40_000_000  # a depth map is converted to float64 (8 bytes a pixel): 320 MB at this size
HoleMode = Literal["clip", "mask"]
HOLE_MODES: tuple[str, ...] = ("clip", "mask")
DepthFormat = Literal["mm", "sunrgbd"]
DEPTH_FORMATS: tuple[str, ...] = ("mm", "sunrgbd")
PNG_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
ACCEPTS = ("16-bit depth PNG files (millimetres), .npy files or [H, W] float arrays/tensors in metres (or "
           "disparity with kind='disparity'), uint16 arrays in millimetres, or a [B, H, W] batch")


def read_depth_file(item: Any, argument: str) -> np.ndarray:
    """A depth file -> its raw ``[H, W]`` array: uint16/int32 for 16-bit PNGs, as stored for ``.npy``."""
    path = check_file(item, argument, "a depth map")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with open(path, "rb") as handle:
            magic = handle.read(6)
        if magic != b"\x93NUMPY":
            raise InputFileError(f"`{argument}`: {str(path)!r} is not a readable .npy file: it does not start with "
                                 f"the .npy magic bytes (got {magic!r})")
        try:
            array = np.load(path, allow_pickle=False, mmap_mode="r")  # the header's shape is checked before reading
        except (OSError, ValueError, EOFError) as error:
            raise InputFileError(f"`{argument}`: {str(path)!r} is not a readable .npy file ({error})") from None
        if array.size > MAX_DEPTH_PIXELS:
            raise InputFileError(f"`{argument}`: depth map {str(path)!r} has shape {array.shape} = {array.size:,} "
                                 f"values, more than the {MAX_DEPTH_PIXELS:,} anybind reads "
                                 "(anybind.modalities.depth.conversion.MAX_DEPTH_PIXELS)")
        return np.array(array)
    if suffix != ".png":
        raise InputFileError(f"`{argument}`: unsupported depth file type {suffix or '(none)'!r} of {str(path)!r}; "
                             "expected a 16-bit .png (millimetres) or a .npy array")
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            opened = Image.open(path)
        with opened as image:
            width, height = image.size
            if width < 1 or height < 1 or width * height > MAX_DEPTH_PIXELS:
                raise InputFileError(f"`{argument}`: depth PNG {str(path)!r} is {width}x{height} pixels; expected "
                                     f"1 to {MAX_DEPTH_PIXELS:,} pixels "
                                     "(anybind.modalities.depth.conversion.MAX_DEPTH_PIXELS)")
            image.load()
            mode = image.mode
            array = np.array(image)
    except Image.DecompressionBombError:
        raise InputFileError(f"`{argument}`: depth PNG {str(path)!r} declares more pixels than the "
                             f"{MAX_DEPTH_PIXELS:,} anybind reads") from None
    except InputFileError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InputFileError(f"`{argument}`: {str(path)!r} is not a readable PNG ({error})") from None
    if mode not in PNG_16BIT_MODES:
        raise InputFileError(f"`{argument}`: expected a 16-bit single-channel depth PNG (millimetres), got "
                             f"{str(path)!r} with image mode {mode!r}")
    return array.astype(np.int64).astype(np.uint16) if array.dtype != np.uint16 else array


def to_float_map(raw: Any, argument: str, png_depth_scale: float, kind: DepthKind) -> np.ndarray:
    """A raw depth/disparity map -> ``[H, W]`` float64: uint16 values are scaled by `png_depth_scale`
    (millimetres -> metres, depth only), floats are taken as metres (or disparity)."""
    if isinstance(raw, torch.Tensor):
        raw = raw.detach().cpu().numpy()
    if not isinstance(raw, np.ndarray):
        raise InputError(f"`{argument}`: expected {ACCEPTS}; got {describe(raw)}")
    array = raw.squeeze(0) if raw.ndim == 3 and raw.shape[0] == 1 else raw
    if array.ndim != 2 or min(array.shape) < 1:
        raise InputError(f"`{argument}`: expected a [H, W] depth map, got shape {tuple(raw.shape)}")
    if array.dtype == np.uint16:
        if kind == "disparity":
            raise InputError(f"`{argument}`: a uint16 map is depth in millimetres; disparity must be a float array")
        return array.astype(np.float64) * png_depth_scale
    if array.dtype.kind != "f":
        raise InputError(f"`{argument}`: expected float depth in metres (or uint16 millimetres), got dtype {array.dtype}")
    return array.astype(np.float64)


def decode_sunrgbd(raw: Any, argument: str, max_depth: float) -> np.ndarray:
    """A SUN RGB-D depth PNG's raw ``[H, W]`` uint16 values -> depth in metres (float64).

    Undoes the bit rotation ``(v >> 3) | (v << 13)`` (millimetres) and caps at `max_depth` metres,
    as SUNRGBDtoolbox ``read3dPoints.m`` does; 0 stays 0 (a hole).
    """
    if isinstance(raw, torch.Tensor):
        raw = raw.detach().cpu().numpy()
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint16:
        raise InputError(f"`{argument}`: depth format 'sunrgbd' expects the raw uint16 values of a SUN RGB-D depth "
                         f"PNG, got {describe(raw)}")
    rotated = (raw >> np.uint16(3)) | (raw << np.uint16(13))
    return np.minimum(rotated.astype(np.float64) / 1000.0, max_depth)


def depth_to_disparity(depth: np.ndarray, *, focal_length: float, baseline: float, min_depth: float,
                       max_depth: float, argument: str, holes: HoleMode = "clip") -> tuple[np.ndarray, np.ndarray]:
    """``[H, W]`` depth in metres -> (disparity in pixels, valid mask), ImageBind's recipe.

    Depth is clipped to [min_depth, max_depth] and ``disparity = baseline · focal_length / depth``.
    `holes` ``"clip"`` (the paper's recipe): 0 and NaN are clipped to `min_depth` (maximal
    disparity) and +inf to `max_depth`; every pixel is valid. ``"mask"``: only finite depths > 0
    are valid, the others get disparity 0.
    """
    if holes not in HOLE_MODES:
        raise InputError(f"`holes`: expected one of {', '.join(map(repr, HOLE_MODES))}, got {holes!r}")
    valid = np.isfinite(depth) & (depth > 0)
    negative = int((np.isfinite(depth) & (depth < 0)).sum())
    if negative:
        raise InputError(f"`{argument}`: depth must be >= 0 (0 marks a missing measurement), got {negative} "
                         f"negative pixel(s), e.g. {float(depth[np.isfinite(depth) & (depth < 0)][0]):.4g}")
    if not valid.any():
        raise InputError(f"`{argument}`: the depth map has no valid pixels (all {depth.size} are 0, NaN or inf)")
    if holes == "clip":
        filled = np.where(np.isnan(depth), 0.0, depth)
        return baseline * focal_length / np.clip(filled, min_depth, max_depth), np.ones_like(valid)
    clipped = np.clip(np.where(valid, depth, 1.0), min_depth, max_depth)
    return np.where(valid, baseline * focal_length / clipped, 0.0), valid


def clean_disparity(disparity: np.ndarray, argument: str) -> tuple[np.ndarray, np.ndarray]:
    """A given ``[H, W]`` disparity map -> (disparity with invalid pixels set to 0, valid mask)."""
    valid = np.isfinite(disparity) & (disparity > 0)
    negative = int((np.isfinite(disparity) & (disparity < 0)).sum())
    if negative:
        raise InputError(f"`{argument}`: disparity must be >= 0, got {negative} negative pixel(s)")
    if not valid.any():
        raise InputError(f"`{argument}`: the disparity map has no valid pixels (all {disparity.size} are 0, NaN or inf)")
    return np.where(valid, disparity, 0.0), valid


def masked_resize(values: torch.Tensor, valid: torch.Tensor, size: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize ``[H, W]`` `values` with a boolean `valid` mask to ``[size, size]``: shortest side to
    `size`, then center crop. Invalid pixels never bleed into valid ones (normalized convolution);
    an output pixel is valid when at least half of what it averages was valid."""
    height, width = values.shape
    scale = size / min(height, width)
    target = (max(size, round(height * scale)), max(size, round(width * scale)))
    mask = valid.to(values.dtype)[None, None]
    antialias = mode in ("bilinear", "bicubic")
    weighted = F.interpolate((values * mask.squeeze())[None, None], size=target, mode=mode, antialias=antialias)
    weight = F.interpolate(mask, size=target, mode=mode, antialias=antialias)
    top, left = (target[0] - size) // 2, (target[1] - size) // 2
    weighted = weighted[0, 0, top:top + size, left:left + size]
    weight = weight[0, 0, top:top + size, left:left + size]
    out_valid = weight > 0.5
    out = torch.where(out_valid, weighted / weight.clamp_min(1e-6), torch.zeros_like(weighted))
    return out.clamp_min(0), out_valid
