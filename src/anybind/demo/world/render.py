"""A small z-buffered triangle rasterizer in numpy: shaded RGB and the depth map of one render.

Perspective pinhole camera looking at the origin, z-up world. Faces are back-face culled,
every (face, pixel) candidate inside a face's bounding box is tested with edge functions at
the pixel centre, and the nearest candidate wins per pixel (the z-buffer, done by sorting).
Shading is Blinn-Phong with material extras: an environment reflection (metal), wood-grain
rings, translucency with a Fresnel rim (glass) and speckle (rubber).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anybind.demo.world.config import MaterialLook

SKY = np.array([0.80, 0.86, 0.95])  # environment colour reflected by upward-facing metal
GROUND = np.array([0.22, 0.20, 0.18])  # environment colour reflected by downward-facing metal
WOOD_TINT = np.array([0.55, 0.35, 0.18])  # wood's own colour mixed into its paint


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at `position` (metres) looking at the origin with up = +z."""

    position: np.ndarray  # [3] metres
    fov_deg: float  # field of view (square image), degrees

    @classmethod
    def orbit(cls, distance_m: float, azimuth: float, elevation: float, fov_deg: float) -> Camera:
        """Camera on a sphere of radius `distance_m` at `azimuth`/`elevation` (radians)."""
        position = distance_m * np.array([np.cos(elevation) * np.cos(azimuth),
                                          np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
        return cls(position=position, fov_deg=fov_deg)

    def basis(self) -> np.ndarray:
        """``[3, 3]`` rows: right, up, forward (unit vectors, world coordinates)."""
        forward = -self.position / np.linalg.norm(self.position)
        right = np.cross(forward, (0.0, 0.0, 1.0))
        right /= np.linalg.norm(right)
        return np.stack([right, np.cross(right, forward), forward])


@dataclass
class Render:
    """One rendered view."""

    rgb: np.ndarray  # [S, S, 3] uint8
    depth: np.ndarray  # [S, S] float32 camera-space depth in metres, 0 where no object
    mask: np.ndarray  # [S, S] bool, True where the object covers the pixel centre


def background(size: int, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """``[S, S, 3]`` float vertical gradient from `top` to `bottom` colours."""
    weight = np.linspace(0.0, 1.0, size)[:, None, None]
    return np.broadcast_to(top * (1 - weight) + bottom * weight, (size, size, 3)).copy()


def rasterize(vertices: np.ndarray, faces: np.ndarray, camera: Camera, size: int) -> tuple[np.ndarray, ...]:
    """Z-buffer `vertices` ``[V, 3]`` (metres) / `faces` ``[F, 3]`` into a `size` x `size` image.

    Returns per covered pixel: flat pixel index ``[P]``, face index ``[P]``, depth ``[P]``
    (metres) and perspective-correct barycentric weights ``[P, 3]``.
    """
    basis = camera.basis()
    cam = (vertices - camera.position) @ basis.T  # x right, y up, z forward (depth)
    focal = (size / 2) / np.tan(np.radians(camera.fov_deg) / 2)
    depth = cam[:, 2]
    sx = size / 2 + focal * cam[:, 0] / depth
    sy = size / 2 - focal * cam[:, 1] / depth
    tri_x, tri_y, tri_z = sx[faces], sy[faces], depth[faces]  # [F, 3] each
    # Signed screen area; with y pointing down, front faces (outward normals) are clockwise.
    area = ((tri_x[:, 1] - tri_x[:, 0]) * (tri_y[:, 2] - tri_y[:, 0])
            - (tri_x[:, 2] - tri_x[:, 0]) * (tri_y[:, 1] - tri_y[:, 0]))
    keep = (area < -1e-9) & (tri_z.min(axis=1) > 1e-3)
    face_ids = np.nonzero(keep)[0]
    tri_x, tri_y, tri_z, area = tri_x[keep], tri_y[keep], tri_z[keep], area[keep]
    x0 = np.clip(np.floor(tri_x.min(axis=1) - 0.5), 0, size).astype(np.int64)
    x1 = np.clip(np.ceil(tri_x.max(axis=1) - 0.5), -1, size - 1).astype(np.int64)
    y0 = np.clip(np.floor(tri_y.min(axis=1) - 0.5), 0, size).astype(np.int64)
    y1 = np.clip(np.ceil(tri_y.max(axis=1) - 0.5), -1, size - 1).astype(np.int64)
    width, height = np.maximum(x1 - x0 + 1, 0), np.maximum(y1 - y0 + 1, 0)
    counts = width * height
    owner = np.repeat(np.arange(len(counts)), counts)  # candidate -> culled-face row
    offset = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    px = x0[owner] + offset % width[owner] + 0.5
    py = y0[owner] + offset // width[owner] + 0.5
    ax, ay, az = tri_x[owner], tri_y[owner], tri_z[owner]
    # Edge functions -> screen-space barycentrics of the pixel centre.
    w0 = ((ax[:, 1] - px) * (ay[:, 2] - py) - (ax[:, 2] - px) * (ay[:, 1] - py)) / area[owner]
    w1 = ((ax[:, 2] - px) * (ay[:, 0] - py) - (ax[:, 0] - px) * (ay[:, 2] - py)) / area[owner]
    w2 = 1.0 - w0 - w1
    inside = (w0 >= -1e-7) & (w1 >= -1e-7) & (w2 >= -1e-7)
    bary = np.stack([w0, w1, w2], axis=1)[inside]
    az, owner = az[inside], owner[inside]
    pixel = (py[inside] - 0.5).astype(np.int64) * size + (px[inside] - 0.5).astype(np.int64)
    # Perspective-correct interpolation: 1/z is linear in screen space.
    weighted = bary / az
    inverse_depth = weighted.sum(axis=1)
    z = 1.0 / inverse_depth
    order = np.lexsort((z, pixel))
    first = np.ones(order.size, dtype=bool)
    first[1:] = pixel[order][1:] != pixel[order][:-1]
    winner = order[first]
    return (pixel[winner], face_ids[owner[winner]], z[winner],
            weighted[winner] / inverse_depth[winner, None])


def shade(normals: np.ndarray, positions: np.ndarray, local: np.ndarray, camera: Camera, light_dir: np.ndarray,
          ambient: float, colour: np.ndarray, look: MaterialLook, rng: np.random.Generator) -> np.ndarray:
    """Colours ``[P, 3]`` (linear, unclipped) of surface points.

    `normals` ``[P, 3]`` unit world normals, `positions` ``[P, 3]`` world points (metres),
    `local` ``[P, 3]`` object-frame points (for wood grain), `light_dir` ``[3]`` unit vector
    towards the light, `colour` ``[3]`` base colour.
    """
    view = camera.position - positions
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    facing = np.sum(normals * view, axis=1, keepdims=True)
    normals = np.where(facing < 0, -normals, normals)  # inner walls seen from inside (mug)
    facing = np.abs(facing)
    lambert = np.clip(normals @ light_dir, 0.0, None)[:, None]
    half = light_dir + view
    half /= np.linalg.norm(half, axis=1, keepdims=True)
    highlight = np.clip(np.sum(normals * half, axis=1), 0.0, None)[:, None] ** look.shininess
    base = np.broadcast_to(colour, positions.shape).copy()
    if look.grain:
        radius = np.hypot(local[:, 0], local[:, 2] * 0.3 + local[:, 1])
        phase = rng.uniform(0, 2 * np.pi)
        rings = 0.5 + 0.5 * np.sin(radius * rng.uniform(90.0, 140.0) + 2.0 * np.sin(local[:, 2] * 25.0) + phase)
        base = 0.55 * base + 0.45 * WOOD_TINT
        base *= (1.0 - look.grain) + look.grain * rings[:, None]
    rgb = base * (ambient + look.diffuse * lambert)
    if look.reflection:
        reflected = 2 * facing * normals - view
        upness = np.clip(0.5 + 4.0 * reflected[:, 2:3], 0.0, 1.0)  # a sharp horizon reads as chrome
        environment = GROUND * (1 - upness) + SKY * upness
        rgb = (1 - look.reflection) * rgb + look.reflection * environment * (0.35 + 0.65 * base)
    rgb = rgb + look.specular * highlight * (base if look.reflection else 1.0)
    if look.speckle:
        rgb *= 1.0 + look.speckle * rng.standard_normal((len(rgb), 1))
    if look.opacity < 1.0:
        rim = (1.0 - facing) ** 3  # Fresnel-like: grazing angles reflect more
        rgb = rgb + 0.6 * rim
    return rgb


def render(vertices: np.ndarray, faces: np.ndarray, camera: Camera, size: int, light_dir: np.ndarray,
           ambient: float, colour: np.ndarray, look: MaterialLook, backdrop: np.ndarray,
           rng: np.random.Generator) -> Render:
    """Render a mesh (``[V, 3]`` metres, ``[F, 3]`` faces) over `backdrop` ``[S, S, 3]`` (floats in [0, 1]).

    `vertices` are in the object frame, which is also the world frame (the object sits at the origin).
    """
    pixel, face, z, bary = rasterize(vertices, faces, camera, size)
    triangles = vertices[faces[face]]  # [P, 3, 3]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    positions = np.einsum("pk,pkd->pd", bary, triangles)
    colours = shade(normals, positions, positions, camera, light_dir, ambient, colour, look, rng)
    image = backdrop.reshape(-1, 3).copy()
    if look.opacity < 1.0:
        tint = 0.75 + 0.25 * colour
        image[pixel] = look.opacity * colours + (1 - look.opacity) * image[pixel] * tint
    else:
        image[pixel] = colours
    depth = np.zeros(size * size, dtype=np.float32)
    depth[pixel] = z
    mask = np.zeros(size * size, dtype=bool)
    mask[pixel] = True
    # Display gamma 1/2.2 on linear colours.
    rgb = (np.clip(image, 0.0, 1.0) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8).reshape(size, size, 3)
    return Render(rgb=rgb, depth=depth.reshape(size, size), mask=mask.reshape(size, size))
