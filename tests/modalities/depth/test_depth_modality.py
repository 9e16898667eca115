"""Depth: file formats, ImageBind's disparity recipe, camera presets, masking, encoders, bad inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from anybind.errors import ConfigError, InputError, InputFileError, UnknownNameError
from anybind.model import build_modality
from anybind.modalities.depth import DepthModality
from anybind.config import load_named
from anybind.modalities.depth import DepthPreprocess
from anybind.modalities.depth.conversion import decode_sunrgbd, depth_to_disparity, masked_resize, read_depth_file


@pytest.fixture(scope="module")
def modality(tiny_model) -> DepthModality:  # type: ignore[no-untyped-def]
    return tiny_model.bound("depth").modality


def depth_metres(height: int = 48, width: int = 64) -> np.ndarray:
    """A ramp from 0.5 m to 4 m with a hole (0) and a NaN, like a real sensor frame."""
    depth = np.tile(np.linspace(0.5, 4.0, width), (height, 1))
    depth[:4, :4] = 0.0
    depth[20:28, 28:36] = 0.0
    depth[10, 10] = np.nan
    return depth


def test_recipe_matches_imagebind_formula() -> None:
    depth = depth_metres()
    disparity, valid = depth_to_disparity(depth, focal_length=500.0, baseline=0.075, min_depth=0.01, max_depth=50.0,
                                          argument="x", holes="mask")
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = 0.075 * 500.0 / depth
    assert not valid[0, 0] and not valid[10, 10] and disparity[0, 0] == 0 and disparity[10, 10] == 0
    np.testing.assert_allclose(disparity[valid], expected[valid])
    far, _ = depth_to_disparity(np.full((2, 2), 80.0), focal_length=500.0, baseline=0.075, min_depth=0.01,
                                max_depth=50.0, argument="x")
    np.testing.assert_allclose(far, 0.075 * 500.0 / 50.0)  # clipped to 50 m


def test_png_millimetres_npy_metres_and_arrays_agree(modality, tmp_path) -> None:  # type: ignore[no-untyped-def]
    depth = np.nan_to_num(depth_metres())
    millimetres = np.round(depth * 1000).astype(np.uint16)
    Image.fromarray(millimetres).save(tmp_path / "d.png")
    np.save(tmp_path / "d.npy", millimetres.astype(np.float64) / 1000)
    batch = modality.load([tmp_path / "d.png", tmp_path / "d.npy", millimetres, torch.from_numpy(depth).float()])
    size = modality.anchor.image_preprocess.size
    assert batch["disparity"].shape == (4, 1, size, size) and batch["valid"].shape == (4, 1, size, size)
    for index in range(1, 4):
        torch.testing.assert_close(batch["disparity"][index], batch["disparity"][0], rtol=1e-3, atol=1e-3)
    # The default (the authors' recipe) clips the hole to 0.01 m: maximal disparity, valid.
    peak = 0.075 * 518.86 / 0.01
    assert float(batch["valid"].min()) == 1 and float(batch["disparity"][0, 0, size // 2, size // 2]) > 0.5 * peak
    masking = DepthModality(dataclasses.replace(modality.preprocess, holes="mask"), modality.anchor)
    masked = masking.load([tmp_path / "d.png"])
    assert float(masked["valid"][0, 0, size // 2, size // 2]) == 0  # with holes="mask" the hole stays invalid


def test_holes_are_clipped_to_min_depth_by_default() -> None:
    # The ImageBind/Omnivore recipe: depth 0 (and NaN) clipped to 0.01 m -> disparity b·f/0.01.
    depth = np.array([[0.0, 2.0], [np.nan, np.inf]])
    disparity, valid = depth_to_disparity(depth, focal_length=500.0, baseline=0.075, min_depth=0.01, max_depth=50.0,
                                          argument="x")
    np.testing.assert_allclose(disparity, [[3750.0, 18.75], [3750.0, 0.75]])
    assert valid.all()
    assert load_named(DepthPreprocess, "preprocess/depth", "default", "depth preprocess").holes == "clip"


def test_sunrgbd_format_undoes_the_bit_rotation(modality, tmp_path) -> None:  # type: ignore[no-untyped-def]
    millimetres = np.array([[0, 1234, 2500], [7999, 9000, 65535 // 8]], dtype=np.uint16)
    # How SUN RGB-D stores depth: rotated left by 3 bits (read back with (v >> 3) | (v << 13)).
    stored = ((millimetres.astype(np.uint32) << 3) | (millimetres.astype(np.uint32) >> 13)).astype(np.uint16)
    Image.fromarray(stored).save(tmp_path / "sun.png")
    raw = read_depth_file(tmp_path / "sun.png", "x")
    metres = decode_sunrgbd(raw, "x", max_depth=8.0)
    np.testing.assert_allclose(metres, [[0.0, 1.234, 2.5], [7.999, 8.0, 8.0]])  # capped at 8 m
    as_sun = modality.load([tmp_path / "sun.png"], format="sunrgbd")["disparity"]
    reference = modality.load([np.minimum(millimetres.astype(np.float64) / 1000, 8.0)])["disparity"]
    torch.testing.assert_close(as_sun, reference)
    as_plain = modality.load([tmp_path / "sun.png"])["disparity"]  # read as plain millimetres: 8x too deep
    assert float(as_plain[0, 0, 0, -1]) == pytest.approx(float(reference[0, 0, 0, -1]) / 8, rel=0.05)


def test_camera_presets_and_explicit_intrinsics(modality) -> None:  # type: ignore[no-untyped-def]
    depth = np.full((32, 32), 2.0)
    kinect = modality.load([depth])["disparity"]
    realsense = modality.load([depth], camera="realsense")["disparity"]
    explicit = modality.load([depth], focal_length=100.0, baseline=0.1)["disparity"]
    config = modality.preprocess
    ratio = (config.camera("realsense").baseline * config.camera("realsense").focal_length
             / (config.camera("kinect").baseline * config.camera("kinect").focal_length))
    torch.testing.assert_close(realsense, kinect * ratio)
    torch.testing.assert_close(explicit, torch.full_like(explicit, 0.1 * 100.0 / 2.0))
    assert config.camera("kinect").baseline == 0.075 and config.camera("realsense").baseline == 0.095
    assert (config.min_depth, config.max_depth) == (0.01, 50.0)


def test_disparity_input_is_masked_not_converted(modality) -> None:  # type: ignore[no-untyped-def]
    disparity = np.full((16, 16), 7.0)
    disparity[0] = np.nan
    batch = modality.load([disparity], kind="disparity")
    assert float(batch["disparity"].max()) == pytest.approx(7.0)
    assert float(batch["valid"].mean()) < 1


def test_masked_resize_does_not_bleed_invalid_pixels() -> None:
    values = torch.full((40, 40), 10.0)
    valid = torch.ones(40, 40, dtype=torch.bool)
    values[:, :20], valid[:, :20] = 0.0, False
    resized, resized_valid = masked_resize(values, valid, 20, "bilinear")
    assert torch.allclose(resized[resized_valid], torch.tensor(10.0))
    assert not bool(resized_valid[:, :9].any()) and bool(resized_valid[:, 11:].all())


@pytest.mark.parametrize("encoder", ["anchor-image", "cnn"])
def test_encoders_embed_unit_vectors(tiny_model, encoder: str) -> None:  # type: ignore[no-untyped-def]
    built = build_modality("depth", {"encoder": encoder}, tiny_model.anchor)
    batch = built.modality.load([depth_metres(), depth_metres() * 2])
    with torch.no_grad():
        features = built.encoder(batch)
    assert features.shape == (2, tiny_model.dim) and bool(torch.isfinite(features).all())
    trainable = [p for p in built.encoder.parameters() if p.requires_grad]
    assert bool(trainable) == (encoder == "cnn")


def test_embed_through_the_model(tiny_model) -> None:  # type: ignore[no-untyped-def]
    vectors = tiny_model.embed("depth", np.stack([depth_metres(), depth_metres()]), camera="realsense")
    assert vectors.shape == (2, tiny_model.dim)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(2))


def bad_file(tmp_path, name: str):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    if name == "gray8.png":
        Image.fromarray(np.full((8, 8), 100, dtype=np.uint8)).save(path)
    elif name == "broken.png":
        path.write_bytes(b"\x89PNG not really")
    elif name == "depth.exr":
        path.write_bytes(b"exr")
    return path


BAD_INPUTS = [
    (np.zeros((8, 8)), {}, InputError, r"`inputs\[0\]`: the depth map has no valid pixels \(all 64 are 0, NaN or inf\)"),
    (np.full((8, 8), np.nan), {}, InputError, r"has no valid pixels"),
    (np.zeros((8, 8)), {"kind": "disparity"}, InputError, r"the disparity map has no valid pixels"),
    (np.full((8, 8), -1.0), {}, InputError, r"`inputs\[0\]`: depth must be >= 0 .* got 64 negative pixel\(s\)"),
    (-np.ones((8, 8)), {"kind": "disparity"}, InputError, r"disparity must be >= 0"),
    (np.ones((8, 8)), {"format": "kinect"}, InputError, r"`format`: expected one of 'mm', 'sunrgbd', got 'kinect'"),
    (np.ones((8, 8)), {"format": "sunrgbd"}, InputError, r"`inputs\[0\]`: depth format 'sunrgbd' expects the raw uint16"),
    (np.ones((8, 8), np.uint16), {"format": "sunrgbd", "kind": "disparity"}, InputError, r"cannot be combined with kind"),
    (np.ones((8, 8), dtype=np.uint8), {}, InputError, r"`inputs\[0\]`: expected float depth in metres \(or uint16 "
                                                      r"millimetres\), got dtype uint8"),
    (np.ones((8, 8), dtype=np.uint16), {"kind": "disparity"}, InputError, r"disparity must be a float array"),
    (np.ones((2, 3, 8)), {}, InputError, r"`inputs\[0\]`: expected a \[H, W\] depth map, got shape \(2, 3, 8\)"),
    ("a string", {}, InputFileError, r"`inputs\[0\]`: a depth map file 'a string' does not exist"),
    (3.5, {}, InputError, r"`inputs\[0\]`: expected 16-bit depth PNG files .* got float 3.5"),
    ("@gray8.png", {}, InputFileError, r"expected a 16-bit single-channel depth PNG \(millimetres\), got .* mode 'L'"),
    ("@broken.png", {}, InputFileError, r"is not a readable PNG"),
    ("@depth.exr", {}, InputFileError, r"unsupported depth file type '.exr'"),
    (np.ones((8, 8)), {"kind": "normals"}, InputError, r"`kind`: expected 'depth' or 'disparity', got 'normals'"),
    (np.ones((8, 8)), {"camera": "kinekt"}, UnknownNameError, r"`camera`: unknown depth camera preset 'kinekt'; "
                                                             r"did you mean 'kinect'"),
    (np.ones((8, 8)), {"baseline": -0.1}, InputError, r"`baseline`: expected a positive number, got -0.1"),
    (np.ones((8, 8)), {"focal_length": 0}, InputError, r"`focal_length`: expected a positive number, got 0"),
    (np.ones((8, 8)), {"units": "mm"}, InputError, r"depth inputs take options .*; got unknown units"),
]


@pytest.mark.parametrize("item, options, error, message", BAD_INPUTS)
def test_bad_inputs(modality, tmp_path, item, options, error, message) -> None:  # type: ignore[no-untyped-def]
    if isinstance(item, str) and item.startswith("@"):
        item = bad_file(tmp_path, item[1:])
    with pytest.raises(error, match=message):
        modality.load([item], **options)


def test_bad_encoder_args(tiny_model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'channel'"):
        build_modality("depth", {"encoder": "cnn", "encoder_args": {"channel": [8]}}, tiny_model.anchor)
