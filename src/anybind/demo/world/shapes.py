"""Meshes of the world's shape classes: trimesh primitives and simple composites.

Every mesh is z-up, centred on its bounding-box centre, with largest extent 1 (unitless);
`posed_mesh` scales it to metres. Meshes are built once per process and cached.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import trimesh
from trimesh import creation

from anybind.errors import UnknownNameError, unknown_name_message

SECTIONS = 20  # circle segments of round primitives: smooth enough at 64-96 px, few faces


def _at(mesh: trimesh.Trimesh, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> trimesh.Trimesh:
    mesh.apply_translation((x, y, z))
    return mesh


def _box(ex: float, ey: float, ez: float, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> trimesh.Trimesh:
    return _at(creation.box(extents=(ex, ey, ez)), x, y, z)


def _rod(radius: float, height: float, x: float = 0.0, y: float = 0.0, z: float = 0.0,
         sections: int = 10) -> trimesh.Trimesh:
    return _at(creation.cylinder(radius=radius, height=height, sections=sections), x, y, z)


def _table() -> trimesh.Trimesh:
    parts = [_box(1.0, 0.7, 0.07, z=0.62)]
    parts += [_rod(0.035, 0.6, x=sx * 0.43, y=sy * 0.28, z=0.3) for sx in (-1, 1) for sy in (-1, 1)]
    return trimesh.util.concatenate(parts)


def _chair() -> trimesh.Trimesh:
    parts = [_box(0.5, 0.5, 0.06, z=0.48), _box(0.5, 0.06, 0.55, y=0.22, z=0.78)]
    parts += [_rod(0.03, 0.46, x=sx * 0.21, y=sy * 0.21, z=0.23) for sx in (-1, 1) for sy in (-1, 1)]
    return trimesh.util.concatenate(parts)


def _mug() -> trimesh.Trimesh:
    body = creation.annulus(r_min=0.27, r_max=0.32, height=0.8, sections=SECTIONS)
    bottom = _rod(0.28, 0.06, z=-0.37, sections=SECTIONS)
    handle = creation.torus(major_radius=0.2, minor_radius=0.05, major_sections=16, minor_sections=8)
    handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    handle.apply_translation((0.38, 0.0, 0.0))
    return trimesh.util.concatenate([body, bottom, handle])


def _lamp() -> trimesh.Trimesh:
    base = _rod(0.2, 0.05, z=0.025, sections=SECTIONS)
    pole = _rod(0.025, 0.7, z=0.4, sections=8)
    shade = creation.cone(radius=0.32, height=0.38, sections=SECTIONS)
    shade.apply_translation((0.0, 0.0, 0.62))
    return trimesh.util.concatenate([base, pole, shade])


_BUILDERS: dict[str, Callable[[], trimesh.Trimesh]] = {
    "cube": lambda: creation.box(extents=(1.0, 1.0, 1.0)),
    "sphere": lambda: creation.icosphere(subdivisions=2, radius=0.5),
    "cylinder": lambda: creation.cylinder(radius=0.3, height=1.0, sections=SECTIONS),
    "cone": lambda: creation.cone(radius=0.45, height=1.0, sections=SECTIONS),
    "torus": lambda: creation.torus(major_radius=0.35, minor_radius=0.15, major_sections=24, minor_sections=10),
    "capsule": lambda: creation.capsule(height=0.6, radius=0.22, count=(SECTIONS, SECTIONS)),
    "pyramid": lambda: creation.cone(radius=0.6, height=0.8, sections=4),
    "ring": lambda: creation.annulus(r_min=0.32, r_max=0.5, height=0.12, sections=2 * SECTIONS),
    "table": _table,
    "chair": _chair,
    "mug": _mug,
    "lamp": _lamp,
}


def shape_names() -> tuple[str, ...]:
    """Names of every shape class this module can build."""
    return tuple(_BUILDERS)


@functools.lru_cache(maxsize=None)
def canonical_mesh(shape: str) -> trimesh.Trimesh:
    """The z-up mesh of `shape`, centred, largest extent 1. Cached: do not modify the result."""
    if shape not in _BUILDERS:
        raise UnknownNameError(unknown_name_message("world shape", shape, _BUILDERS))
    mesh = _BUILDERS[shape]()
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    mesh.apply_scale(1.0 / float(mesh.extents.max()))
    return mesh


def posed_mesh_arrays(shape: str, size_m: float, stretch: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[V, 3]`` (metres, z-up, centred) and faces ``[F, 3]`` of one object instance.

    `stretch` ``[3]`` is a per-axis aspect jitter (around 1), `yaw` a rotation about z (radians);
    the result's largest extent is `size_m` metres.
    """
    mesh = canonical_mesh(shape)
    vertices = np.asarray(mesh.vertices, dtype=np.float64) * stretch
    cos, sin = np.cos(yaw), np.sin(yaw)
    rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    vertices = vertices @ rotation.T
    vertices -= (vertices.max(axis=0) + vertices.min(axis=0)) / 2
    vertices *= size_m / float((vertices.max(axis=0) - vertices.min(axis=0)).max())
    return vertices, np.asarray(mesh.faces, dtype=np.int64)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` points ``[count, 3]`` sampled uniformly by area on the triangle surface.

    The same method as ``trimesh.sample.sample_surface`` (faces drawn with probability
    proportional to area, then a uniform point in the triangle), vectorized without building a
    `trimesh.Trimesh` per object.
    """
    triangles = vertices[faces]
    origin, edge_a, edge_b = triangles[:, 0], triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]
    area = np.linalg.norm(np.cross(edge_a, edge_b), axis=1)
    cumulative = np.cumsum(area)
    chosen = np.minimum(np.searchsorted(cumulative, rng.uniform(0.0, cumulative[-1], count)), len(faces) - 1)
    u, v = rng.uniform(size=(2, count, 1))
    flip = (u + v) > 1.0  # reflect points of the parallelogram's far half back into the triangle
    u, v = np.where(flip, 1.0 - u, u), np.where(flip, 1.0 - v, v)
    return (origin[chosen] + u * edge_a[chosen] + v * edge_b[chosen]).astype(np.float32)
