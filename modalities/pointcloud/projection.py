"""Point clouds -> multi-view depth images, batched over clouds and views in one pass (pure torch).

Two methods, with every constant read from ``configs/preprocess/pointcloud/default.yaml``:

- ``"pointclip"`` — PointCLIP V1 (Zhang et al., CVPR 2022): rotate into each of 6 views, push the
  camera back (z += 1.6), project perspectively (u = x/z, v = y/z) onto a 128×128 grid (pixel
  ceil((u + 1)·R/2 − 0.5), the official code's half-pixel offset); a pixel
  holds the harmonic mean of the depths landing on it (count / Σ 1/z), empty pixels are 0.
- ``"realistic"`` — PointCLIP V2 (Zhu et al., ICCV 2023): rotate into each of 10 views (plus a small
  bias rotation), normalize every cloud-and-view to [-1, 1] (x, y scaled by 0.8), voxelize into
  8 depth bins × 112×112 keeping the largest depth value per cell, densify (1×7×7 max-pool),
  smooth (normalized 1×3×3 Gaussian, σ = 3), take the max over depth and invert so the background
  is white (1 − I / max I).

Neither method applies CLIP's mean/std pixel normalization: both PointCLIP papers feed the raw
depth images to CLIP. The `projection` encoder has a flag for it (off by default).

Scatters use `Tensor.scatter_reduce_` ("sum" for V1, "amax" for V2); no torch_scatter needed.

V2 on CPU runs in chunks of cloud-views spread over `torch.get_num_threads()` worker threads, each
running torch single-threaded: a chunk's many small ops then never wait at an OpenMP barrier for a
thread the OS has descheduled (on a busy machine that stall, once per op, made one call swing from
0.25 s to 10 s). A slow worker only delays its own chunk; the others keep taking chunks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from anybind.errors import InputError
from anybind.modalities.pointcloud.config import PointCloudPreprocess, PointCLIPViews, RealisticViews, load_preprocess
from anybind.workers import single_threaded_pool

Method = Literal["pointclip", "realistic"]
METHODS: tuple[str, ...] = ("pointclip", "realistic")
Views = Sequence[int] | torch.Tensor | None
# V2 post-processing runs over this many cloud-views at a time: the dense voxel grids of a chunk
# stay in CPU cache, which is several times faster than one pass over the whole batch.
REALISTIC_CHUNK = 8


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """``[V, 3]`` Euler angles (x, y, z) in radians -> ``[V, 3, 3]`` rotations R = Rx·Ry·Rz."""
    x, y, z = angles.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rx = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], -1)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1)
    rz = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], -1)
    shape = (*angles.shape[:-1], 3, 3)
    return rx.reshape(shape) @ ry.reshape(shape) @ rz.reshape(shape)


def method_views(method: str, config: PointCloudPreprocess | None = None) -> PointCLIPViews | RealisticViews:
    """The view constants of `method` (``"pointclip"`` or ``"realistic"``) from `config`."""
    config = config or load_preprocess()
    if method == "pointclip":
        return config.pointclip
    if method == "realistic":
        return config.realistic
    raise InputError(f"`method`: expected one of {', '.join(map(repr, METHODS))}, got {method!r}")


def view_names(method: str, views: Views = None, config: PointCloudPreprocess | None = None) -> list[str]:
    """Display names of the selected views (``view3`` style for custom rotation matrices)."""
    names = list(method_views(method, config).view_names)
    if views is None:
        return names
    if isinstance(views, torch.Tensor):
        return [f"view{i}" for i in range(views.shape[0])]
    return [names[i] for i in views]


def view_rotations(method: str, views: Views = None, config: PointCloudPreprocess | None = None,
                   device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[V, 3, 3]`` matrices M taking a cloud into each view's camera frame (p_view = M · p).

    `views` selects view indices of the method (default: all), or is a ``[V, 3, 3]`` tensor of
    custom rotations used as is. For ``"realistic"`` M = R(bias) · R(view).
    """
    constants = method_views(method, config)
    if isinstance(views, torch.Tensor):
        if views.ndim != 3 or views.shape[1:] != (3, 3) or views.shape[0] < 1:
            raise InputError(f"`views`: expected view indices or a [V, 3, 3] rotation tensor, "
                             f"got a tensor of shape {tuple(views.shape)}")
        return views.to(device=device, dtype=dtype)
    count = len(constants.view_angles)
    if views is None:
        index = list(range(count))
    else:
        index = list(views)
        bad = [v for v in index if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < count]
        if not index or bad:
            raise InputError(f"`views`: expected a non-empty list of view indices in [0, {count - 1}] for "
                             f"method {method!r}, got {list(views)!r}")
    # Built in float64, then cast, so float32 and float64 callers share the same rotations.
    angles = torch.tensor([constants.view_angles[i] for i in index], dtype=torch.float64)
    rotation = euler_to_matrix(angles)
    if isinstance(constants, RealisticViews):
        bias = torch.tensor([constants.bias_angles[i] for i in index], dtype=torch.float64)
        rotation = euler_to_matrix(bias) @ rotation
    return rotation.to(device=device, dtype=dtype)


def _as_point_batch(points: Any) -> torch.Tensor:
    """Validate `points` into a float ``[B, N, 3]`` tensor (``[N, 3]`` becomes a batch of one)."""
    if isinstance(points, np.ndarray):
        points = torch.from_numpy(points)
    if not isinstance(points, torch.Tensor):
        raise InputError(f"`points`: expected a float tensor [N, 3] or [B, N, 3], got {type(points).__name__}")
    if points.ndim == 2:
        points = points.unsqueeze(0)
    if points.ndim != 3 or points.shape[-1] != 3:
        raise InputError(f"`points`: expected a float tensor [N, 3] or [B, N, 3], got shape {tuple(points.shape)}")
    if not points.is_floating_point():
        raise InputError(f"`points`: expected a floating-point tensor, got dtype {points.dtype}")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise InputError(f"`points`: expected at least one cloud of at least one point, got shape {tuple(points.shape)}")
    if not bool(torch.isfinite(points).all()):
        raise InputError(f"`points`: expected finite coordinates, got {int((~torch.isfinite(points)).sum())} NaN/inf")
    return points


def rotate_into_views(points: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """``[B, N, 3]`` clouds and ``[V, 3, 3]`` rotations -> ``[B, V, N, 3]`` rotated clouds."""
    return torch.einsum("vij,bnj->bvni", rotations, points)


def pointclip_depth(points: torch.Tensor, constants: PointCLIPViews, resolution: int) -> torch.Tensor:
    """PointCLIP V1 depth maps: ``[B, V, N, 3]`` view-frame clouds -> ``[B, V, R, R]`` depths.

    Pixel row = x, column = y, as in PointCLIP. Empty pixels are 0; otherwise the harmonic mean of
    the camera-frame depths z (in the cloud's units) of the points landing on the pixel.
    """
    batch, views, count, _ = points.shape
    x, y, z = points.unbind(-1)
    z = z + constants.camera_offset
    safe_z = torch.where(z > 0, z, torch.ones_like(z))
    # The official code shifts every point by -0.5 pixel before `ceil` (its `distribute` spreads a
    # point over linspace(-size/2, size/2 - 1, size) offsets; PointCLIP uses size 1, i.e. -0.5).
    row = torch.ceil((x / safe_z + 1) * resolution / 2 - 0.5)
    col = torch.ceil((y / safe_z + 1) * resolution / 2 - 0.5)
    valid = (z > 0) & (row >= 0) & (row <= resolution - 1) & (col >= 0) & (col <= resolution - 1)
    pixels = resolution * resolution
    image = torch.arange(batch * views, device=points.device).view(batch, views, 1) * pixels
    flat = image + row.clamp(0, resolution - 1).long() * resolution + col.clamp(0, resolution - 1).long()
    dump = batch * views * pixels  # invalid points land in one extra slot that is dropped
    flat = torch.where(valid, flat, torch.full_like(flat, dump)).reshape(-1)
    inverse_depth = torch.zeros(dump + 1, dtype=points.dtype, device=points.device)
    inverse_depth.scatter_reduce_(0, flat, (1 / safe_z).reshape(-1), reduce="sum")
    hits = torch.zeros(dump + 1, dtype=points.dtype, device=points.device)
    hits.scatter_reduce_(0, flat, torch.ones_like(safe_z).reshape(-1), reduce="sum")
    # Divide per point rather than per pixel (points are far fewer than pixels), writing the result
    # over the counts: every point of a pixel writes the same value, so scatter order does not matter.
    depth = hits.scatter_(0, flat, hits[flat] / inverse_depth[flat])
    return depth[:dump].view(batch, views, resolution, resolution)


def realistic_grid(points: torch.Tensor, constants: RealisticViews, resolution: int) -> torch.Tensor:
    """PointCLIP V2 voxelization: ``[B, V, N, 3]`` -> ``[B, V, depth_bins, R, R]`` (dims: depth, x, y).

    Each cloud-and-view is centered on its bounding box and scaled by its largest extent to
    [-1, 1]; x, y are scaled by `object_ratio`. A cell holds the largest depth value
    ``((z + 1) / 2 + depth_bias) / (1 + depth_bias) · (depth_bins − 2)`` (clipped to
    [1, depth_bins − 2]) of its points; empty cells are 0.
    """
    batch, views, count, _ = points.shape
    low, high = points.amin(dim=2, keepdim=True), points.amax(dim=2, keepdim=True)
    extent = (high - low).amax(dim=-1, keepdim=True).clamp_min(torch.finfo(points.dtype).eps)
    unit = (points - (high + low) / 2) / extent * 2
    x, y, z = unit.unbind(-1)
    x, y = x * constants.object_ratio, y * constants.object_ratio
    bins = constants.depth_bins
    row = torch.ceil((x + 1) / 2 * resolution).clamp(1, resolution - 2).long()
    col = torch.ceil((y + 1) / 2 * resolution).clamp(1, resolution - 2).long()
    depth = ((z + 1) / 2 + constants.depth_bias) / (1 + constants.depth_bias) * (bins - 2)
    layer = torch.ceil(depth).clamp(0, bins - 1).long()
    value = depth.clamp(1, bins - 2)
    cells = bins * resolution * resolution
    image = torch.arange(batch * views, device=points.device).view(batch, views, 1) * cells
    flat = (image + (layer * resolution + row) * resolution + col).reshape(-1)
    grid = torch.zeros(batch * views * cells, dtype=points.dtype, device=points.device)
    grid.scatter_reduce_(0, flat, value.reshape(-1), reduce="amax", include_self=True)
    return grid.view(batch, views, bins, resolution, resolution)


def gaussian_line(size: int, sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The normalized 1-D Gaussian factor (the 2-D blur kernel is its outer product with itself)."""
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    line = torch.exp(-(offsets ** 2) / (2 * sigma ** 2))
    return (line / line.sum()).to(dtype)


def _sliding_max(values: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """Max over windows of `width` along `dim` (stride 1, no padding), by doubling shifted maxima.

    Much faster on CPU than ``max_pool2d`` over many single-channel slices.
    """
    covered = 1
    while covered < width:
        step = min(covered, width - covered)
        length = values.shape[dim]
        values = torch.maximum(values.narrow(dim, 0, length - step), values.narrow(dim, step, length - step))
        covered += step
    return values


def _separable_filter(values: torch.Tensor, taps: torch.Tensor, dim: int) -> torch.Tensor:
    """Correlate `values` with the 1-D `taps` along `dim` (no padding): length shrinks by len−1."""
    weights = taps.tolist()
    length = values.shape[dim] - len(weights) + 1
    out = values.narrow(dim, 0, length) * weights[0]
    for offset in range(1, len(weights)):
        out.add_(values.narrow(dim, offset, length), alpha=weights[offset])
    return out


def realistic_image(grid: torch.Tensor, constants: RealisticViews) -> torch.Tensor:
    """``[B, V, D, R, R]`` voxel grids -> ``[B, V, R', R']`` inverted depth images in [0, 1].

    Densify (max-pool with the configured kernel and padding, stride 1), smooth (normalized
    Gaussian, zero padding), squeeze (max over depth), invert: 1 − I / max I, so the background is
    1 (white) and near surfaces are dark. R' = R + 2·pad − kernel + 1.
    """
    batch, views, bins, rows, cols = grid.shape
    kz, ky, kx = constants.pool_kernel
    pz, py, px = constants.pool_padding
    if kz != 1 or pz != 0:
        raise InputError(f"`pool_kernel`/`pool_padding`: only a depth extent of 1 is supported, got "
                         f"{constants.pool_kernel} / {constants.pool_padding}")
    # Depth layers no point reached stay 0 through pooling and smoothing and cannot win the final
    # max (every value is >= 0), so only the occupied range of layers is processed.
    occupied = grid.flatten(3).amax(dim=(0, 1, 3)).nonzero()
    first, last = (int(occupied.min()), int(occupied.max())) if occupied.numel() else (0, 0)
    layers = grid[:, :, first:last + 1]
    # Zero padding equals max-pool's -inf padding here: values are >= 0 and every window holds a
    # real cell (padding < kernel).
    pooled = F.pad(layers, (px, px, py, py))
    pooled = _sliding_max(_sliding_max(pooled, ky, dim=3), kx, dim=4)
    size = constants.gaussian_kernel
    taps = gaussian_line(size, constants.gaussian_sigma, grid.dtype).to(grid.device)
    smooth = F.pad(pooled, (size // 2,) * 4)
    smooth = _separable_filter(_separable_filter(smooth, taps, dim=3), taps, dim=4)
    squeezed = smooth.amax(dim=2)
    peak = squeezed.flatten(2).amax(dim=2).clamp_min(torch.finfo(grid.dtype).tiny)[..., None, None]
    return 1 - squeezed / peak


def _realistic_chunk(points: torch.Tensor, constants: RealisticViews, resolution: int, size: int | None,
                     grad: bool, inference: bool) -> torch.Tensor:
    """``[c, 1, N, 3]`` view-frame clouds -> ``[c, 1, H, W]`` V2 images (resized to `size` if given)."""
    with torch.inference_mode(inference), torch.set_grad_enabled(grad):
        images = realistic_image(realistic_grid(points, constants, resolution), constants)
        if size is not None:
            align = constants.align_corners if constants.interpolation in ("linear", "bilinear", "bicubic") else None
            images = F.interpolate(images, size=(size, size), mode=constants.interpolation, align_corners=align)
        return images


def realistic_images(points: torch.Tensor, constants: RealisticViews, resolution: int,
                     size: int | None = None) -> torch.Tensor:
    """PointCLIP V2 images of ``[B, V, N, 3]`` view-frame clouds -> ``[B, V, R', R']`` (or ``size x size``).

    Equals ``realistic_image(realistic_grid(points, ...), ...)`` (then resized to `size` with the
    configured interpolation), computed `REALISTIC_CHUNK` cloud-views at a time so peak memory
    stays bounded and the grids stay in cache. On CPU with several torch threads the chunks run
    on `anybind.workers.single_threaded_pool` workers, each single-threaded.
    """
    batch, views, count, _ = points.shape
    flat = points.reshape(batch * views, 1, count, 3)
    chunks = [flat[start:start + REALISTIC_CHUNK] for start in range(0, batch * views, REALISTIC_CHUNK)]
    modes = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())
    workers = min(torch.get_num_threads(), len(chunks))
    if points.device.type != "cpu" or workers < 2:
        images = [_realistic_chunk(chunk, constants, resolution, size, *modes) for chunk in chunks]
    else:
        pool = single_threaded_pool(torch.get_num_threads())
        images = list(pool.map(lambda chunk: _realistic_chunk(chunk, constants, resolution, size, *modes), chunks))
    return torch.cat(images).view(batch, views, *images[0].shape[-2:])


def project_to_views(points: Any, method: Method = "realistic", views: Views = None, resolution: int | None = None,
                     *, size: int | None = None, config: PointCloudPreprocess | None = None) -> torch.Tensor:
    """Render point clouds as multi-view depth images, all clouds and views in one batched pass.

    Args:
        points: ``[N, 3]`` or ``[B, N, 3]`` float tensor (or numpy array) of coordinates, normally
            centered and scaled into the unit sphere (see the point-cloud loader).
        method: ``"pointclip"`` (V1, 6 views, depth values) or ``"realistic"`` (V2, 10 views).
        views: view indices of the method (default: all), or a ``[V, 3, 3]`` tensor of rotations.
        resolution: grid side in pixels (default from the config: 128 for V1, 112 for V2).
        size: resize the images to ``size × size`` (e.g. the anchor's input size); default: none.
        config: preprocessing constants (default: ``configs/preprocess/pointcloud/default.yaml``).

    Returns:
        ``[B, V, 3, H, W]`` float images on the points' device and dtype. V1: harmonic-mean depth
        (units of the cloud, 0 = empty); V2: inverted normalized depth in [0, 1], background 1.
        No CLIP mean/std normalization is applied (the PointCLIP papers skip it).
    """
    cloud = _as_point_batch(points)
    constants = method_views(method, config)
    grid_size = constants.resolution if resolution is None else resolution
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 8:
        raise InputError(f"`resolution`: expected an integer >= 8, got {resolution!r}")
    rotations = view_rotations(method, views, config, device=cloud.device, dtype=cloud.dtype)
    in_view = rotate_into_views(cloud, rotations)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise InputError(f"`size`: expected a positive integer, got {size!r}")
    resized = isinstance(constants, RealisticViews)  # V2 resizes inside its chunks
    if isinstance(constants, PointCLIPViews):
        images = pointclip_depth(in_view, constants, grid_size)
    else:
        images = realistic_images(in_view, constants, grid_size, size)
    batch, count = images.shape[:2]
    if size is not None and not resized:
        align = constants.align_corners if constants.interpolation in ("linear", "bilinear", "bicubic") else None
        images = F.interpolate(images.reshape(batch * count, 1, *images.shape[-2:]), size=(size, size),
                               mode=constants.interpolation, align_corners=align)
    return images.reshape(batch, count, 1, *images.shape[-2:]).expand(-1, -1, 3, -1, -1)


def save_views(points: Any, directory: str | Path, method: Method = "realistic", views: Views = None,
               resolution: int | None = None, *, size: int | None = None, prefix: str = "cloud",
               config: PointCloudPreprocess | None = None) -> list[Path]:
    """Write the depth views of `points` (``[N, 3]`` or ``[B, N, 3]``) as 8-bit grayscale PNGs.

    Files are ``<directory>/<prefix><b>_<view name>.png`` (``b`` zero-padded), one per cloud and
    view; returns their paths. V2 images are written as rendered (white background); V1 depth maps
    are scaled by their largest depth so near = dark, far = light, empty = black.
    """
    from PIL import Image

    images = project_to_views(points, method, views, resolution, size=size, config=config)[:, :, 0]
    images = images.detach().float().cpu()
    if method == "pointclip":
        images = images / images.flatten(2).amax(dim=-1).clamp_min(1e-12)[..., None, None]
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    names = view_names(method, views, config)
    digits = max(3, int(math.log10(max(1, pixels.shape[0]))) + 1)
    written = []
    for b in range(pixels.shape[0]):
        for v, name in enumerate(names):
            path = folder / f"{prefix}{b:0{digits}d}_{name}.png"
            Image.fromarray(pixels[b, v], mode="L").save(path)
            written.append(path)
    return written
