"""Renderer and impact-sound sanity: depth matches the silhouette, sizes and materials sound right."""

from __future__ import annotations

import numpy as np
import pytest

from anybind.demo.world import load_world_config
from anybind.demo.world.render import Camera, background, render
from anybind.demo.world.shapes import canonical_mesh, posed_mesh_arrays, shape_names
from anybind.demo.world.sound import decay_time, dominant_frequency, impact_sound

CONFIG = load_world_config()


def _render(shape: str, material: str = "rubber", size_m: float = 0.4, seed: int = 0):  # type: ignore[no-untyped-def]
    vertices, faces = posed_mesh_arrays(shape, size_m, np.ones(3), 0.3)
    camera = Camera.orbit(1.2, 0.4, np.radians(30), CONFIG.camera.fov_deg)
    light = np.array([0.3, 0.4, 0.87])
    backdrop = background(CONFIG.image_size, np.full(3, 0.7), np.full(3, 0.4))
    look = CONFIG.materials[material].look
    return render(vertices, faces, camera, CONFIG.image_size, light / np.linalg.norm(light), 0.25,
                  np.array([0.8, 0.1, 0.1]), look, backdrop, np.random.default_rng(seed)), backdrop


def test_every_config_shape_has_a_closed_mesh() -> None:
    assert set(CONFIG.shapes) <= set(shape_names())
    for name in CONFIG.shapes:
        mesh = canonical_mesh(name)
        assert np.isclose(mesh.extents.max(), 1.0) and len(mesh.faces) > 0


@pytest.mark.parametrize("shape", ["cube", "sphere", "torus", "mug"])
def test_depth_matches_silhouette(shape: str) -> None:
    view, backdrop = _render(shape)
    assert view.mask.any() and not view.mask.all()
    np.testing.assert_array_equal(view.depth > 0, view.mask)
    # Outside the silhouette the image is the untouched backdrop; inside it is not.
    expected = (np.clip(backdrop, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(view.rgb[~view.mask], expected[~view.mask])
    assert (np.abs(view.rgb[view.mask].astype(int) - expected[view.mask]).sum(axis=-1) > 0).mean() > 0.9
    # Depth is in metres: the object (largest extent 0.4 m) sits around the camera distance 1.2 m.
    assert 0.9 < view.depth[view.mask].min() < 1.2 and view.depth[view.mask].max() < 1.5


def test_sphere_depth_is_nearest_surface() -> None:
    view, _ = _render("sphere", size_m=0.5)
    # Nearest point of a 0.25 m radius sphere seen from 1.2 m is at 0.95 m (back faces culled).
    assert abs(view.depth[view.mask].min() - 0.95) < 0.01


def test_bigger_object_sounds_lower() -> None:
    sound = CONFIG.materials["metal"].sound
    modes = CONFIG.shapes["cylinder"].modes
    small = [dominant_frequency(impact_sound(modes, 0.2, sound, 16000, 1.0, np.random.default_rng(s)), 16000)
             for s in range(3)]
    large = [dominant_frequency(impact_sound(modes, 0.6, sound, 16000, 1.0, np.random.default_rng(s)), 16000)
             for s in range(3)]
    assert max(large) < min(small)


def test_metal_rings_longer_than_rubber() -> None:
    modes = CONFIG.shapes["cube"].modes
    metal = [decay_time(impact_sound(modes, 0.4, CONFIG.materials["metal"].sound, 16000, 1.0,
                                     np.random.default_rng(s)), 16000) for s in range(3)]
    rubber = [decay_time(impact_sound(modes, 0.4, CONFIG.materials["rubber"].sound, 16000, 1.0,
                                      np.random.default_rng(s)), 16000) for s in range(3)]
    assert min(metal) > 4 * max(rubber)


def test_sound_varies_between_strikes() -> None:
    sound, modes = CONFIG.materials["glass"].sound, CONFIG.shapes["mug"].modes
    first = impact_sound(modes, 0.3, sound, 16000, 1.0, np.random.default_rng(0))
    second = impact_sound(modes, 0.3, sound, 16000, 1.0, np.random.default_rng(1))
    assert first.shape == (16000,) and not np.allclose(first, second)


def test_drop_pattern_repeats_the_impact() -> None:
    sound, modes = CONFIG.materials["wood"].sound, CONFIG.shapes["cube"].modes
    single = impact_sound(modes, 0.3, sound, 16000, 1.0, np.random.default_rng(0))
    double = impact_sound(modes, 0.3, sound, 16000, 1.0, np.random.default_rng(0), hits=((0.0, 1.0), (0.5, 1.0)))
    late = slice(int(0.5 * 16000), int(0.7 * 16000))  # wood has died out by 0.5 s after one hit
    assert np.abs(double[late]).max() > 10 * np.abs(single[late]).max()
    assert len(CONFIG.shapes["sphere"].hits) > len(CONFIG.shapes["cube"].hits)  # a ball bounces
