"""Frozen dataclasses of the depth constants in ``configs/preprocess/depth/*.yaml``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from anybind.config import from_dict
from anybind.errors import UnknownNameError, unknown_name_message


@dataclass(frozen=True)
class CameraPreset:
    """A depth camera's stereo constants."""

    baseline: float  # metres between the projector/emitter and the sensor
    focal_length: float  # pixels


@dataclass(frozen=True)
class DepthPreprocess:
    """Everything the depth modality reads from its preprocessing config."""

    png_depth_scale: float  # metres per unit of a 16-bit PNG (0.001: millimetres)
    min_depth: float  # metres; depth is clipped to [min_depth, max_depth] before inverting
    max_depth: float
    default_camera: str  # preset used when no `camera` / `baseline` / `focal_length` is given
    cameras: dict  # name -> CameraPreset fields
    size: int | None = None  # square side fed to the encoders; None = the anchor's image size
    interpolation: str = "bilinear"  # masked resize filter
    # Pixels without a measurement (0, NaN): "clip" to min_depth (maximal disparity, the ImageBind /
    # Omnivore recipe) or "mask" them invalid with disparity 0.
    holes: str = "clip"
    sunrgbd_max_depth: float = 8.0  # metres; cap of format="sunrgbd" PNGs (SUNRGBDtoolbox read3dPoints.m)
    version: int = 1

    def camera(self, name: str) -> CameraPreset:
        """The `CameraPreset` called `name`; raises naming the presets that exist."""
        if name not in self.cameras:
            raise UnknownNameError("`camera`: " + unknown_name_message("depth camera preset", str(name), self.cameras))
        return from_dict(CameraPreset, self.cameras[name], f"depth camera preset {name!r}")
