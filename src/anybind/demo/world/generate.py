"""`generate_world`: a seeded procedural world where every object exists in five modalities."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anybind.errors import InputError
from anybind.demo.world.captions import captions_for
from anybind.demo.world.config import WorldConfig, load_world_config
from anybind.demo.world.render import Camera, background, render
from anybind.demo.world.shapes import posed_mesh_arrays, sample_surface

LABELS = ("shape", "material", "colour", "size")
STRETCH_JITTER = 0.1  # per-axis aspect jitter of an instance: factor in [1 - j, 1 + j]


@dataclass
class World:
    """The generated objects, as arrays aligned on the object axis N.

    `images` ``[N, S, S, 3]`` uint8 RGB; `depth` ``[N, S, S]`` float32 metres (0 = background);
    `points` ``[N, P, 3]`` float32 metres in the object frame (z up, centred); `sounds`
    ``[N, T]`` float32 in [-1, 1] at `config.sample_rate`; `captions` N tuples of strings;
    labels `shape`, `material`, `colour`, `size` as string arrays ``[N]``; `size_m` ``[N]``
    the largest extent in metres; `split` ``[N]`` "train"/"val"/"test"; `ids` ``[N]`` names.
    """

    config: WorldConfig
    seed: int
    ids: np.ndarray
    split: np.ndarray
    shape: np.ndarray
    material: np.ndarray
    colour: np.ndarray
    size: np.ndarray
    size_m: np.ndarray
    captions: list[tuple[str, ...]]
    images: np.ndarray
    depth: np.ndarray
    points: np.ndarray
    sounds: np.ndarray
    files: dict[str, Path] = field(default_factory=dict)  # split -> manifest path, once written

    def __len__(self) -> int:
        return len(self.ids)

    def labels(self, kind: str) -> np.ndarray:
        """String labels ``[N]`` of attribute `kind` ("shape", "material", "colour" or "size")."""
        if kind not in LABELS:
            raise InputError(f"`kind`: expected one of {', '.join(LABELS)}, got {kind!r}")
        return getattr(self, kind)  # type: ignore[no-any-return]

    def class_names(self, kind: str) -> tuple[str, ...]:
        """The classes of attribute `kind` in config order."""
        self.labels(kind)
        return self.config.class_names(kind)

    def label_ids(self, kind: str) -> np.ndarray:
        """Integer labels ``[N]`` of attribute `kind` (indices into `class_names(kind)`)."""
        names = self.class_names(kind)
        lookup = {name: index for index, name in enumerate(names)}
        return np.array([lookup[v] for v in self.labels(kind)], dtype=np.int64)

    def subset(self, split: str | np.ndarray) -> World:
        """The objects of one split ("train", "val", "test"), or of a boolean/index array."""
        if isinstance(split, str):
            if split not in self.config.splits:
                raise InputError(f"`split`: expected one of {', '.join(self.config.splits)}, got {split!r}")
            select = np.nonzero(self.split == split)[0]
        else:
            select = np.asarray(split)
        pick = lambda array: array[select]  # noqa: E731
        return World(config=self.config, seed=self.seed, ids=pick(self.ids), split=pick(self.split),
                     shape=pick(self.shape), material=pick(self.material), colour=pick(self.colour),
                     size=pick(self.size), size_m=pick(self.size_m),
                     captions=[self.captions[i] for i in np.arange(len(self))[select]],
                     images=pick(self.images), depth=pick(self.depth), points=pick(self.points),
                     sounds=pick(self.sounds))

    def write(self, out_dir: str | Path, depth_format: str = "png16") -> dict[str, Path]:
        """Write every object's files and the per-split manifests; see `anybind.demo.world.files`."""
        from anybind.demo.world.files import write_world

        self.files = write_world(self, out_dir, depth_format=depth_format)
        return self.files


def _split_names(n_objects: int, fractions: Mapping[str, float], rng: np.random.Generator) -> np.ndarray:
    """Split name per object: a seeded shuffle cut at the configured fractions."""
    names = list(fractions)
    cuts = np.round(np.cumsum([fractions[name] for name in names]) * n_objects).astype(int)
    ordered = np.empty(n_objects, dtype=object)
    start = 0
    for name, stop in zip(names, cuts):
        ordered[start:stop] = name
        start = stop
    return ordered[rng.permutation(n_objects)].astype(str)


def _balanced(count: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """``[count]`` class indices where every class appears equally often (+-1), in random order."""
    return rng.permutation(np.resize(np.arange(n_classes), count))


def _object(index: int, seed: int, shape: str, material: str, colour: str, size: str,
            config: WorldConfig) -> tuple[Any, ...]:
    """Generate one object's media from its own RNG stream ``(seed, index)``."""
    from anybind.demo.world.sound import impact_sound

    rng = np.random.default_rng([seed, index])
    low, high = config.sizes[size]
    size_m = float(rng.uniform(low, high))
    stretch = rng.uniform(1 - STRETCH_JITTER, 1 + STRETCH_JITTER, 3)
    vertices, faces = posed_mesh_arrays(shape, size_m, stretch, float(rng.uniform(0, 2 * np.pi)))
    camera_cfg, light_cfg = config.camera, config.light
    azimuth = rng.uniform(0, 2 * np.pi)
    camera = Camera.orbit(rng.uniform(*camera_cfg.distance_m), azimuth,
                          np.radians(rng.uniform(*camera_cfg.elevation_deg)), camera_cfg.fov_deg)
    light_azimuth = azimuth + np.radians(rng.uniform(-light_cfg.azimuth_jitter_deg, light_cfg.azimuth_jitter_deg))
    light_elevation = np.radians(rng.uniform(*light_cfg.elevation_deg))
    light = np.array([np.cos(light_elevation) * np.cos(light_azimuth),
                      np.cos(light_elevation) * np.sin(light_azimuth), np.sin(light_elevation)])
    grey = rng.uniform(0.35, 0.8)
    top = np.clip(grey + rng.uniform(-0.05, 0.05, 3), 0, 1)
    backdrop = background(config.image_size, top, top * rng.uniform(0.45, 0.85))
    colour_rgb = np.clip(np.array(config.colours[colour]) * rng.uniform(0.85, 1.15, 3), 0, 1)
    view = render(vertices, faces, camera, config.image_size, light, float(rng.uniform(*light_cfg.ambient)),
                  colour_rgb, config.materials[material].look, backdrop, rng)
    points = sample_surface(vertices, faces, config.n_points, rng)
    sound = impact_sound(config.shapes[shape].modes, size_m, config.materials[material].sound,
                         config.sample_rate, config.sound_seconds, rng, hits=config.shapes[shape].hits)
    captions = captions_for(shape, material, colour, size, config, rng)
    return size_m, captions, view.rgb, view.depth, points, sound


def _objects(indices: range, seed: int, attributes: list[tuple[str, str, str, str]],
             config: WorldConfig) -> list[tuple[Any, ...]]:
    return [_object(i, seed, *attributes[i - indices.start], config) for i in indices]


def generate_world(n_objects: int, seed: int = 0, out_dir: str | Path | None = None,
                   config: str | Mapping[str, Any] | WorldConfig = "default", workers: int = 1,
                   depth_format: str = "png16") -> World:
    """Generate `n_objects` objects deterministically from `seed` (same seed -> same arrays).

    Shapes and materials are balanced (each class equally often), colours and sizes uniform.
    `config` names a file in ``configs/world/`` or is a mapping / `WorldConfig`. `workers` > 1
    generates in that many processes (results are identical). When `out_dir` is given the
    files and manifests are written there too (see `World.write`).
    """
    if isinstance(n_objects, bool) or not isinstance(n_objects, int) or n_objects < 1:
        raise InputError(f"`n_objects`: expected a positive integer, got {n_objects!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"`seed`: expected a non-negative integer, got {seed!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"`workers`: expected a positive integer, got {workers!r}")
    world_config = config if isinstance(config, WorldConfig) else load_world_config(config)
    rng = np.random.default_rng([seed, 2**31])  # the world-level stream, apart from objects' streams
    shapes = np.array(world_config.class_names("shape"))[_balanced(n_objects, len(world_config.shapes), rng)]
    materials = np.array(world_config.class_names("material"))[_balanced(n_objects, len(world_config.materials), rng)]
    colours = np.array(world_config.class_names("colour"))[rng.integers(len(world_config.colours), size=n_objects)]
    sizes = np.array(world_config.class_names("size"))[rng.integers(len(world_config.sizes), size=n_objects)]
    split = _split_names(n_objects, world_config.splits, rng)
    attributes = list(zip(shapes.tolist(), materials.tolist(), colours.tolist(), sizes.tolist()))
    if workers == 1:
        results = _objects(range(n_objects), seed, attributes, world_config)
    else:
        bounds = np.linspace(0, n_objects, workers + 1).astype(int)
        chunks = [range(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = pool.map(_objects, chunks, [seed] * len(chunks),
                             [attributes[c.start:c.stop] for c in chunks], [world_config] * len(chunks))
            results = [item for part in parts for item in part]
    size_m, captions, images, depth, points, sounds = zip(*results)
    world = World(config=world_config, seed=seed, ids=np.array([f"obj-{i:06d}" for i in range(n_objects)]),
                  split=split, shape=shapes, material=materials, colour=colours, size=sizes,
                  size_m=np.array(size_m, dtype=np.float32), captions=list(captions),
                  images=np.stack(images), depth=np.stack(depth), points=np.stack(points), sounds=np.stack(sounds))
    if out_dir is not None:
        world.write(out_dir, depth_format=depth_format)
    return world
