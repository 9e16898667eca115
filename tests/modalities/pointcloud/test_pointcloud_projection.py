"""Geometry of the PointCLIP V1/V2 projections against expectations and a float64 reference."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from anybind.errors import InputError
from anybind.modalities.pointcloud.config import load_preprocess
from anybind.modalities.pointcloud.projection import project_to_views, realistic_grid, rotate_into_views, save_views, view_rotations

CONFIG = load_preprocess()


def sphere(count: int, seed: int = 0) -> torch.Tensor:
    """`count` points on the unit sphere surface."""
    points = torch.randn(count, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (points / points.norm(dim=1, keepdim=True)).float()


def cube_surface(count: int, seed: int = 0) -> torch.Tensor:
    """`count` points on the surface of the axis-aligned cube inscribed in the unit sphere."""
    rng = np.random.default_rng(seed)
    half = 1 / math.sqrt(3)
    points = rng.uniform(-half, half, size=(count, 3))
    axis = rng.integers(0, 3, size=count)
    points[np.arange(count), axis] = rng.choice([-half, half], size=count)
    return torch.from_numpy(points).float()


# ---------- float64 reference: direct per-point / per-pixel loops, written independently ----------

def euler(angles: tuple[float, float, float]) -> np.ndarray:
    x, y, z = angles
    rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    return rx @ ry @ rz


def reference_pointclip(points: np.ndarray) -> np.ndarray:
    c = CONFIG.pointclip
    res = c.resolution
    out = np.zeros((len(c.view_angles), res, res))
    for v, angles in enumerate(c.view_angles):
        rotation = euler(angles)
        inverse, count = np.zeros((res, res)), np.zeros((res, res))
        for p in points:
            x, y, z = rotation @ p
            z += c.camera_offset
            if z <= 0:
                continue
            row, col = math.ceil((x / z + 1) * res / 2 - 0.5), math.ceil((y / z + 1) * res / 2 - 0.5)
            if 0 <= row <= res - 1 and 0 <= col <= res - 1:
                inverse[row, col] += 1 / z
                count[row, col] += 1
        out[v] = np.where(count > 0, count / np.where(count > 0, inverse, 1), 0)
    return out


def reference_realistic(points: np.ndarray) -> np.ndarray:
    c = CONFIG.realistic
    res, bins = c.resolution, c.depth_bins
    images = []
    for angles, bias in zip(c.view_angles, c.bias_angles):
        view = points @ (euler(bias) @ euler(angles)).T
        low, high = view.min(axis=0), view.max(axis=0)
        view = (view - (low + high) / 2) / (high - low).max() * 2
        grid = np.zeros((bins, res, res))
        for x, y, z in view:
            x, y = x * c.object_ratio, y * c.object_ratio
            row = min(max(math.ceil((x + 1) / 2 * res), 1), res - 2)
            col = min(max(math.ceil((y + 1) / 2 * res), 1), res - 2)
            depth = ((z + 1) / 2 + c.depth_bias) / (1 + c.depth_bias) * (bins - 2)
            layer = math.ceil(depth)
            grid[layer, row, col] = max(grid[layer, row, col], min(max(depth, 1), bins - 2))
        _, k, _ = c.pool_kernel
        _, pad, _ = c.pool_padding
        padded = np.pad(grid, ((0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
        pooled = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2)).max(axis=(-1, -2))
        g = c.gaussian_kernel
        offsets = np.arange(g) - g // 2
        kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * c.gaussian_sigma ** 2))
        kernel /= kernel.sum()
        smooth_in = np.pad(pooled, ((0, 0), (g // 2, g // 2), (g // 2, g // 2)))
        size = pooled.shape[1]
        smooth = np.zeros_like(pooled)
        for i in range(g):
            for j in range(g):
                smooth += kernel[i, j] * smooth_in[:, i:i + size, j:j + size]
        image = smooth.max(axis=0)
        images.append(1 - image / image.max())
    return np.stack(images)


# ---------- expected silhouettes and depth ranges ----------

def test_sphere_pointclip_views_are_disks_with_expected_depths() -> None:
    views = project_to_views(sphere(80000), "pointclip")[0, :, 0]
    offset = CONFIG.pointclip.camera_offset
    radius_px = math.tan(math.asin(1 / offset)) * 64  # silhouette of the unit sphere at distance 1.6
    rows, cols = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    distance = ((rows - 64) ** 2 + (cols - 64) ** 2).sqrt()
    for view in views:
        hit = view > 0
        assert float(distance[hit].max()) <= radius_px + 1.5
        assert float(hit[distance < radius_px - 3].float().mean()) > 0.9  # the disk is (nearly) filled
        assert float(view[hit].min()) >= offset - 1 - 1e-4 and float(view[hit].max()) <= offset + 1 + 1e-4


def test_cube_pointclip_views_are_squares_with_expected_depths() -> None:
    views = project_to_views(cube_surface(30000), "pointclip")[0, :, 0]
    half, offset = 1 / math.sqrt(3), CONFIG.pointclip.camera_offset
    edge_px = half / (offset - half) * 64  # the near face's edge, the widest part of the silhouette
    for view in views:
        rows, cols = torch.nonzero(view > 0, as_tuple=True)
        assert float((rows - 64).abs().max()) <= edge_px + 1.5 and float((cols - 64).abs().max()) <= edge_px + 1.5
        assert float((rows - 64).abs().max()) >= edge_px - 2  # reaches the square's edge
        assert float(view[view > 0].min()) >= offset - half - 1e-4
        assert float(view[view > 0].max()) <= offset + half + 1e-4


def test_sphere_realistic_views_are_centered_disks_on_white() -> None:
    points = sphere(8000)
    grid = realistic_grid(rotate_into_views(points[None], view_rotations("realistic")), CONFIG.realistic, 112)
    occupied = grid[grid > 0]
    assert float(occupied.min()) >= 1 and float(occupied.max()) <= CONFIG.realistic.depth_bins - 2
    images = project_to_views(points, "realistic")[0, :, 0]
    assert images.shape == (10, 110, 110)
    expected = CONFIG.realistic.object_ratio * 56  # disk radius in grid cells before densifying
    for image in images:
        assert float(image[0, 0]) == 1.0 and float(image[-1, -1]) == 1.0  # white background
        assert float(image[55, 55]) < 0.5  # the object is dark
        rows, cols = torch.nonzero(image < 1, as_tuple=True)
        for span in (rows, cols):
            width = float(span.max() - span.min())
            assert 2 * expected <= width <= 2 * expected + 10  # disk + the 7x7 densifying window
            assert abs(float(span.max() + span.min()) / 2 - 54.5) <= 3


# ---------- batched == one-by-one, reference agreement, permutation invariance ----------

@pytest.mark.parametrize("method", ["pointclip", "realistic"])
def test_batched_equals_one_by_one(method: str) -> None:
    clouds = torch.stack([sphere(512, 1), cube_surface(512, 2), sphere(512, 3) * 0.5])
    batched = project_to_views(clouds, method)
    for index, cloud in enumerate(clouds):
        torch.testing.assert_close(batched[index], project_to_views(cloud, method)[0])
    single_view = project_to_views(clouds, method, views=[2])
    torch.testing.assert_close(single_view[:, 0], batched[:, 2])


@pytest.mark.parametrize("method, reference", [("pointclip", reference_pointclip), ("realistic", reference_realistic)])
def test_fast_path_agrees_with_float64_reference(method: str, reference) -> None:  # type: ignore[no-untyped-def]
    points = cube_surface(600, 5) * 0.9 + sphere(600, 6)[:1] * 0.05
    expected = reference(points.double().numpy())
    fast64 = project_to_views(points.double(), method)[0, :, 0].numpy()
    np.testing.assert_allclose(fast64, expected, rtol=1e-9, atol=1e-9)
    fast32 = project_to_views(points, method)[0, :, 0].double().numpy()
    close = np.isclose(fast32, expected, rtol=1e-4, atol=1e-4)
    assert close.mean() > 0.995  # float32 rounding may move a rare point across a pixel edge


@pytest.mark.parametrize("method", ["pointclip", "realistic"])
def test_point_order_does_not_change_views(method: str) -> None:
    points = cube_surface(1024, 7)
    shuffled = points[torch.randperm(1024, generator=torch.Generator().manual_seed(0))]
    torch.testing.assert_close(project_to_views(shuffled, method), project_to_views(points, method), rtol=1e-5, atol=1e-5)


def test_resize_custom_rotations_and_resolution() -> None:
    points = sphere(256)
    assert project_to_views(points, "realistic", size=64).shape == (1, 10, 3, 64, 64)
    assert project_to_views(points, "pointclip", resolution=32).shape == (1, 6, 3, 32, 32)
    identity = torch.eye(3)[None].repeat(2, 1, 1)
    assert project_to_views(points, "pointclip", views=identity).shape == (1, 2, 3, 128, 128)


@pytest.mark.parametrize("kwargs, message", [
    ({"points": torch.zeros(0, 3)}, r"`points`: expected at least one cloud"),
    ({"points": torch.zeros(5, 2)}, r"`points`: expected a float tensor \[N, 3\]"),
    ({"points": torch.tensor([[0.0, float("nan"), 0.0]])}, r"`points`: expected finite coordinates"),
    ({"points": torch.zeros(4, 3, dtype=torch.int64)}, r"`points`: expected a floating-point tensor"),
    ({"points": torch.zeros(4, 3), "method": "pointclip3"}, r"`method`: expected one of 'pointclip', 'realistic'"),
    ({"points": torch.zeros(4, 3), "views": [0, 11]}, r"`views`: expected a non-empty list of view indices in \[0, 9\]"),
    ({"points": torch.zeros(4, 3), "views": torch.zeros(2, 3)}, r"`views`: .*\[V, 3, 3\]"),
    ({"points": torch.zeros(4, 3), "resolution": 2}, r"`resolution`: expected an integer >= 8"),
])
def test_projection_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        project_to_views(**kwargs)


def test_save_views_writes_one_png_per_cloud_and_view(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    paths = save_views(torch.stack([sphere(300), cube_surface(300)]), tmp_path / "views", method="pointclip", size=64)
    assert len(paths) == 12 and paths[0].name == "cloud000_front.png"
    with Image.open(paths[0]) as image:
        assert image.size == (64, 64) and image.mode == "L"
    realistic = save_views(sphere(300), tmp_path, views=[0, 9], prefix="chair")
    assert [p.name for p in realistic] == ["chair000_side-45.png", "chair000_bottom.png"]


def test_pointclip_matches_golden_output_of_the_official_code() -> None:
    # data/pointclip_v1_golden.npz: PCViews().get_img of the official PointCLIP repository
    # (ZrrSkywalker/PointCLIP, trainers/mv_utils_zs.py, commit 8656f2c) run once on these fixed
    # clouds (sphere, cube surface, Gaussian blob; 512 points each); depth stored sparse (flat index, value).
    golden = np.load(Path(__file__).parent / "data" / "pointclip_v1_golden.npz")
    expected = np.zeros(int(np.prod(golden["shape"])), dtype=np.float32)
    expected[golden["index"]] = golden["depth"]
    ours = project_to_views(torch.from_numpy(golden["points"]), "pointclip")[:, :, 0].numpy()
    np.testing.assert_allclose(ours.reshape(-1), expected, rtol=0, atol=1e-5)


def test_realistic_pool_matches_one_thread_and_keeps_the_callers_thread_count() -> None:
    from anybind.workers import single_threaded_pool

    clouds = torch.stack([sphere(400, 8), cube_surface(400, 9), sphere(400, 10) * 0.7])
    inline = project_to_views(clouds, "realistic", size=40)  # the modality conftest runs tests with 1 thread
    torch.set_num_threads(2)
    pooled = project_to_views(clouds, "realistic", size=40)
    assert torch.get_num_threads() == 2
    assert list(single_threaded_pool(2).map(lambda _: torch.get_num_threads(), range(4))) == [1, 1, 1, 1]
    torch.testing.assert_close(pooled, inline, rtol=0, atol=0)
    with torch.inference_mode():
        assert project_to_views(clouds[:1], "realistic").shape == (1, 10, 3, 110, 110)
