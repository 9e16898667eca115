"""The procedural world: determinism, coverage, output shapes, speed, manifests and errors."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest

from anybind.errors import InputError
from anybind.demo.world import World, class_prompts, generate_world, load_world_config, read_objects

N_SMALL = 32


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(N_SMALL, seed=7)


def test_same_seed_same_arrays(world: World) -> None:
    again = generate_world(N_SMALL, seed=7)
    for name in ("images", "depth", "points", "sounds", "shape", "material", "colour", "size", "split", "size_m"):
        np.testing.assert_array_equal(getattr(world, name), getattr(again, name), err_msg=name)
    assert world.captions == again.captions


def test_other_seed_differs(world: World) -> None:
    other = generate_world(8, seed=8)
    assert not np.array_equal(world.images[:8], other.images)


def test_workers_give_identical_objects() -> None:
    one = generate_world(6, seed=3)
    two = generate_world(6, seed=3, workers=2)
    np.testing.assert_array_equal(one.images, two.images)
    np.testing.assert_array_equal(one.sounds, two.sounds)


def test_output_shapes_and_ranges(world: World) -> None:
    config = world.config
    size, samples = config.image_size, int(config.sample_rate * config.sound_seconds)
    assert world.images.shape == (N_SMALL, size, size, 3) and world.images.dtype == np.uint8
    assert world.depth.shape == (N_SMALL, size, size) and world.depth.dtype == np.float32
    assert world.points.shape == (N_SMALL, config.n_points, 3) and world.points.dtype == np.float32
    assert world.sounds.shape == (N_SMALL, samples) and world.sounds.dtype == np.float32
    assert np.abs(world.sounds).max() <= 1.0
    assert len(world.captions) == N_SMALL and all(len(c) == config.captions_per_object for c in world.captions)
    # Point clouds are in metres: their largest extent is the object's size.
    extent = (world.points.max(axis=1) - world.points.min(axis=1)).max(axis=1)
    np.testing.assert_allclose(extent, world.size_m, rtol=0.1)


def test_balanced_coverage_and_splits() -> None:
    config = load_world_config()
    world = generate_world(len(config.shapes) * len(config.materials) // 2, seed=1)
    shapes, shape_counts = np.unique(world.shape, return_counts=True)
    assert len(config.shapes) >= 10
    assert set(shapes) == set(config.shapes) and shape_counts.max() - shape_counts.min() <= 1
    assert set(world.material) == set(config.materials)
    assert set(world.split) == {"train", "val", "test"}
    assert world.subset("train").images.shape[0] == int((world.split == "train").sum())


def test_captions_name_the_object(world: World) -> None:
    for i in range(N_SMALL):
        shape_words = world.config.shapes[world.shape[i]].words
        material = world.config.materials[world.material[i]]
        material_words = material.adjectives + material.nouns
        for text in world.captions[i]:
            assert any(word in text for word in shape_words + material_words), text
        first = world.captions[i][0]  # the fullest template: every attribute
        assert any(w in first for w in shape_words) and any(w in first for w in material_words)
        assert world.colour[i] in first and world.size[i] in first
    assert class_prompts("shape", world.config)["sphere"] == "a sphere"


def test_generation_speed() -> None:
    # A few thousand objects must take well under a minute: allow 50 ms per object on busy cores.
    generate_world(2, seed=0)  # warm caches (meshes, config)
    start = time.perf_counter()
    generate_world(24, seed=2)
    assert (time.perf_counter() - start) / 24 < 0.05


def test_write_manifests_and_pairs(world: World, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = world.write(tmp_path)
    records = read_objects(files["train"])
    assert len(records) == int((world.split == "train").sum())
    first = records[0]
    for column in ("image", "depth", "pointcloud", "audio"):
        assert (tmp_path / first[column]).is_file()
    import soundfile
    from PIL import Image

    depth = np.asarray(Image.open(first["depth"]))
    assert depth.dtype == np.uint16
    index = int(np.nonzero(world.ids == first["id"])[0][0])
    np.testing.assert_allclose(depth / 1000.0, world.depth[index], atol=6e-4)
    audio, rate = soundfile.read(first["audio"])
    assert rate == world.config.sample_rate and len(audio) == world.sounds.shape[1]
    np.testing.assert_array_equal(np.load(first["pointcloud"]), world.points[index])
    with open(files["pairs/audio-image"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["split"] for r in rows} <= {"train", "val"} and len(rows) == int((world.split != "test").sum())
    assert (files["pairs/audio-image"].parent / rows[0]["input"]).is_file()
    with open(files["pairs/image-caption"], newline="") as handle:
        assert set(next(csv.DictReader(handle))) == {"input", "caption", "split"}
    summary = json.loads(files["world"].read_text())
    assert summary["n_objects"] == N_SMALL and "cube" in summary["classes"]["shape"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_objects": 0}, r"`n_objects`: expected a positive integer, got 0"),
    ({"n_objects": 2.5}, r"`n_objects`: expected a positive integer, got 2.5"),
    ({"n_objects": 2, "seed": -1}, r"`seed`: expected a non-negative integer, got -1"),
    ({"n_objects": 2, "workers": 0}, r"`workers`: expected a positive integer, got 0"),
    ({"n_objects": 2, "config": "nope"}, r"unknown world config 'nope'"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(Exception, match=message) as caught:
        generate_world(**kwargs)
    assert isinstance(caught.value, (InputError, LookupError))


@pytest.mark.parametrize(("call", "message"), [
    (lambda w: w.subset("holdout"), r"`split`: expected one of train, val, test, got 'holdout'"),
    (lambda w: w.labels("weight"), r"`kind`: expected one of shape, material, colour, size, got 'weight'"),
    (lambda w: w.write("/tmp/x", depth_format="exr"), r"`depth_format`: expected one of png16, npy, got 'exr'"),
    (lambda w: class_prompts("weight", w.config), r"`kind`: expected 'shape', 'material', 'colour' or 'size'"),
])
def test_bad_world_calls(world: World, call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=message):
        call(world)


@pytest.mark.parametrize(("text", "message"), [
    ('\n{not json\n', r"world manifest '.*train.jsonl' line 2: not valid JSON"),
    ('\n["a", "list"]\n', r"world manifest '.*train.jsonl' line 2: expected a JSON object, got list"),
])
def test_bad_world_manifest_lines(tmp_path, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text(text)
    with pytest.raises(InputError, match=message):
        read_objects(manifest)


def test_class_names_follow_config_order(world: World) -> None:
    config = world.config
    assert config.class_names("size") == tuple(config.sizes) and world.class_names("shape") == tuple(config.shapes)
    with pytest.raises(Exception, match=r"`attribute`: expected one of shape, material, colour, size, got 'weight'"):
        config.class_names("weight")


@pytest.mark.parametrize(("change", "message"), [
    ({"sizes": {"small": [0.3, 0.2]}}, r"`sizes.small` must be \[min, max\] metres, got \[0.3, 0.2\]"),
    ({"sizes": {"small": [0.1, 0.2, 0.3]}}, r"`sizes`.small: expected a list of 2 values, got 3"),
    ({"colours": {"red": [1, 0, 2]}}, r"`colours.red` must be \[r, g, b\] in \[0, 1\]"),
    ({"shapes": {"cube": {"wordz": ["cube"]}}}, r"`shapes`.cube: unknown key\(s\) 'wordz'"),
    ({"splits": {"train": 0.5}}, r"`splits` fractions must sum to 1"),
])
def test_bad_world_configs(change: dict, message: str) -> None:
    import yaml

    from anybind.config import config_dirs

    default = next(root / "world" / "default.yaml" for root in config_dirs() if (root / "world" / "default.yaml").is_file())
    with pytest.raises(Exception, match=message):
        load_world_config({**yaml.safe_load(default.read_text()), **change})
