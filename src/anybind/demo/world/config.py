"""The world's settings as frozen dataclasses, read from ``configs/world/<name>.yaml``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anybind.config import load_named
from anybind.errors import ConfigError


@dataclass(frozen=True)
class CameraConfig:
    """Random camera placement around the object (looking at its centre)."""

    distance_m: tuple[float, float]  # camera distance range, metres
    elevation_deg: tuple[float, float]  # elevation range above the horizon, degrees
    fov_deg: float  # field of view, degrees


@dataclass(frozen=True)
class LightConfig:
    """Random directional light."""

    elevation_deg: tuple[float, float]  # light elevation range, degrees
    azimuth_jitter_deg: float  # light azimuth = camera azimuth +- this, degrees
    ambient: tuple[float, float]  # ambient light level range


@dataclass(frozen=True)
class ShapeConfig:
    """One shape class."""

    words: tuple[str, ...]  # caption words; the first is the canonical class name in text
    modes: tuple[float, ...]  # partial frequency ratios of the impact sound (first is 1.0)
    hits: tuple[tuple[float, float], ...] = ((0.0, 1.0),)  # (time s, gain) of each impact when dropped


@dataclass(frozen=True)
class MaterialLook:
    """How a material is shaded (Blinn-Phong terms plus material-specific extras)."""

    diffuse: float  # Lambert weight
    specular: float  # Blinn-Phong highlight weight
    shininess: float  # Blinn-Phong exponent
    reflection: float  # weight of a sky/ground environment reflection (metal)
    opacity: float  # 1 = opaque; < 1 blends with the background (glass)
    grain: float  # strength of wood-grain rings
    speckle: float  # strength of fine per-pixel noise (rubber)


@dataclass(frozen=True)
class MaterialSound:
    """How a material sounds when struck (modal synthesis)."""

    frequency_x_size: float  # fundamental frequency (Hz) times object size (m): bigger is lower
    t60_s: tuple[float, float]  # range of the fundamental's decay time to -60 dB, seconds
    damping_slope: float  # partial k decays faster by (f_k / f_0) ** damping_slope
    spectral_tilt: float  # partial k's amplitude ~ k ** -spectral_tilt (small: bright)
    noise: float  # impact-noise level relative to the partials
    noise_cutoff_hz: float  # low-pass cutoff of the impact noise, Hz


@dataclass(frozen=True)
class MaterialConfig:
    """One material: its caption words, look and sound."""

    adjectives: tuple[str, ...]  # "a {material} cube"
    nouns: tuple[str, ...]  # "a cube made of {material_noun}"
    look: MaterialLook
    sound: MaterialSound


# An object attribute -> the `WorldConfig` field whose keys are its names.
ATTRIBUTE_FIELDS = {"shape": "shapes", "material": "materials", "colour": "colours", "size": "sizes"}


@dataclass(frozen=True)
class WorldConfig:
    """Everything the world generator reads (see ``configs/world/default.yaml``)."""

    image_size: int
    sample_rate: int
    sound_seconds: float
    n_points: int
    captions_per_object: int
    splits: dict[str, float]  # split name -> fraction (sums to 1)
    camera: CameraConfig
    light: LightConfig
    sizes: dict[str, tuple[float, float]]  # size word -> (min, max) largest extent in metres
    colours: dict[str, tuple[float, float, float]]  # colour word -> (r, g, b) in [0, 1]
    shapes: dict[str, ShapeConfig]  # class name -> its words, mesh and sound modes
    materials: dict[str, MaterialConfig]  # material name -> its words, look and sound
    caption_templates: tuple[str, ...]
    version: int = 1

    def class_names(self, attribute: str) -> tuple[str, ...]:
        """The names of `attribute` ("shape", "material", "colour" or "size") in config order (sizes: small to
        large)."""
        if attribute not in ATTRIBUTE_FIELDS:
            raise ConfigError(f"`attribute`: expected one of {', '.join(ATTRIBUTE_FIELDS)}, got {attribute!r}")
        return tuple(getattr(self, ATTRIBUTE_FIELDS[attribute]))


def load_world_config(name_or_mapping: str | Mapping[str, Any] = "default") -> WorldConfig:
    """Read a world config: a name in ``configs/world/`` or a mapping of the `WorldConfig` fields (the config
    parser checks the types, nested maps included; the value ranges are checked here)."""
    config = load_named(WorldConfig, "world", name_or_mapping, "world config")
    where = f"world config {name_or_mapping if isinstance(name_or_mapping, str) else '(mapping)'}"
    for name, shape in config.shapes.items():
        if not shape.words or not shape.modes or shape.modes[0] != 1.0:
            raise ConfigError(f"{where}: `shapes.{name}` needs words and modes starting at 1.0, got {shape}")
    for name, (low, high) in config.sizes.items():
        if not 0 < low <= high:
            raise ConfigError(f"{where}: `sizes.{name}` must be [min, max] metres, got {[low, high]!r}")
    for name, rgb in config.colours.items():
        if not all(0 <= v <= 1 for v in rgb):
            raise ConfigError(f"{where}: `colours.{name}` must be [r, g, b] in [0, 1], got {list(rgb)!r}")
    if abs(sum(config.splits.values()) - 1.0) > 1e-6:
        raise ConfigError(f"{where}: `splits` fractions must sum to 1, got {config.splits!r}")
    if len(config.shapes) < 2 or len(config.materials) < 2:
        raise ConfigError(f"{where}: needs at least 2 shapes and 2 materials")
    return config
