"""Frozen dataclasses of the point-cloud constants in ``configs/preprocess/pointcloud/*.yaml``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from anybind.config import load_named

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class PointCLIPViews:
    """PointCLIP V1 projection constants (perspective depth maps, harmonic mean per pixel)."""

    view_angles: tuple[Vec3, ...]  # Euler (x, y, z) radians per view; R = Rx·Ry·Rz
    view_names: tuple[str, ...]  # one display name per view (save_views file names)
    camera_offset: float  # added to z after rotation
    resolution: int  # square grid side in pixels
    interpolation: str  # torch interpolate mode for the resize to the anchor's size
    align_corners: bool


@dataclass(frozen=True)
class RealisticViews:
    """PointCLIP V2 realistic-projection constants (voxel grid, max-pool, Gaussian, squeeze)."""

    view_angles: tuple[Vec3, ...]  # Euler (x, y, z) radians per view
    bias_angles: tuple[Vec3, ...]  # Euler (x, y, z) radians of the bias rotation after each view
    view_names: tuple[str, ...]
    resolution: int  # voxel grid side
    depth_bins: int  # voxel grid depth
    depth_bias: float  # depth offset keeping occupied voxels above the background value 0
    object_ratio: float  # x, y scale after normalizing each view to [-1, 1]
    pool_kernel: tuple[int, int, int]  # densifying max-pool (depth, y, x)
    pool_padding: tuple[int, int, int]
    gaussian_kernel: int  # square Gaussian kernel side
    gaussian_sigma: float  # Gaussian sigma in grid cells
    interpolation: str
    align_corners: bool


@dataclass(frozen=True)
class PointCloudPreprocess:
    """Everything the point-cloud modality reads from its preprocessing config."""

    num_points: int  # points per cloud after sampling
    seed: int  # sampling seed
    up_axis: Literal["z", "y"]  # which input axis points up
    normalize: bool  # center and scale into the unit sphere
    pointclip: PointCLIPViews
    realistic: RealisticViews
    version: int = 1


DEFAULT_PREPROCESS = "default"


@lru_cache(maxsize=8)
def load_preprocess(name: str = DEFAULT_PREPROCESS) -> PointCloudPreprocess:
    """The `PointCloudPreprocess` of ``configs/preprocess/pointcloud/<name>.yaml`` (cached)."""
    return load_named(PointCloudPreprocess, "preprocess/pointcloud", name, "pointcloud preprocess")
