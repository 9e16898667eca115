"""The ``imu`` modality: inertial measurements (accelerometer + gyroscope) -> anchor-space vectors.

Inputs: ``[6, T]`` arrays or tensors (rows: accelerometer x, y, z then gyroscope x, y, z; T
samples), ``.npy`` files holding one, or a ``[N, 6, T]`` batch. ImageBind's IMU tower takes
T = 2000 (10 s of Ego4D's 200 Hz IMU). Other lengths are refused unless the preprocess says
``length_policy: pad-or-crop`` (zero-pad at the end, or keep the centre). Preprocessing:
``configs/preprocess/imu/``. Encoder: ``imagebind``.
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

ACCEPTS = ("IMU recordings as [6, T] arrays/tensors (accelerometer xyz, gyroscope xyz), .npy files of them, "
           "or a [N, 6, T] batch")


@dataclass(frozen=True)
class ImuPreprocess:
    """Shape rules for IMU inputs (``configs/preprocess/imu/*.yaml``)."""

    channels: int  # rows: accelerometer xyz + gyroscope xyz
    length: int  # samples fed to the encoder
    length_policy: Literal["exact", "pad-or-crop"] = "exact"  # refuse other lengths, or zero-pad / centre-crop
    version: int = 1


def read_imu_file(item: Any, argument: str) -> np.ndarray:
    """A ``.npy`` IMU file -> its array (no pickles)."""
    path: Path = check_file(item, argument, "an IMU .npy")
    if path.suffix.lower() != ".npy":
        raise InputFileError(f"`{argument}`: expected an IMU .npy file, got {str(path)!r}")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise InputFileError(f"`{argument}`: {str(path)!r} is not a readable .npy file ({error})") from None


def fit_length(signal: torch.Tensor, preprocess: ImuPreprocess, argument: str) -> torch.Tensor:
    """``[channels, T]`` -> ``[channels, length]`` per `preprocess.length_policy`."""
    length = signal.shape[1]
    if length == preprocess.length:
        return signal
    if preprocess.length_policy == "exact":
        raise InputError(f"`{argument}`: expected {preprocess.length} samples per axis, got {length} "
                         "(resample or cut your recording, or use a preprocess with length_policy: pad-or-crop)")
    if length < preprocess.length:
        return torch.nn.functional.pad(signal, (0, preprocess.length - length))
    start = (length - preprocess.length) // 2
    return signal[:, start:start + preprocess.length]


@register_modality("imu")
class ImuModality(Modality):
    """Inertial measurement recordings (module docstring)."""

    accepts = ACCEPTS
    Preprocess = ImuPreprocess
    default_preprocess = "imagebind"
    default_encoder = "imagebind"
    item_ndim = 2  # a [6, T] recording; [N, 6, T] is N recordings

    def load(self, items: Sequence[Any], **options: Any) -> torch.Tensor:
        """Items -> ``[B, channels, length]`` float32."""
        preprocess: ImuPreprocess = self.preprocess
        out = []
        for raw, argument in self.read_items(items, options, read_imu_file):
            if isinstance(raw, np.ndarray):
                if raw.dtype.kind not in "fiu":
                    raise InputError(f"`{argument}`: expected numeric IMU samples, got dtype {raw.dtype}")
                raw = torch.from_numpy(raw.astype(np.float32))
            if not isinstance(raw, torch.Tensor):
                raise InputError(f"`{argument}`: expected {ACCEPTS}; got {describe(raw)}")
            if raw.ndim != 2 or raw.shape[0] != preprocess.channels:
                hint = " (transpose a [T, 6] array)" if raw.ndim == 2 and raw.shape[1] == preprocess.channels else ""
                raise InputError(f"`{argument}`: expected [{preprocess.channels}, T] (accelerometer xyz, gyroscope xyz), "
                                 f"got shape {tuple(raw.shape)}{hint}")
            signal = raw.detach().cpu().float()
            check_finite(signal, argument)
            out.append(fit_length(signal, preprocess, argument))
        return torch.stack(out)


@register_encoder("imu", "imagebind")
class ImageBindImuEncoder(ImageBindTowerEncoder):
    """ImageBind's IMU tower (from the ``imagebind`` anchor's checkpoint)."""

    Config = NoConfig
    tower_modality = "imu"
