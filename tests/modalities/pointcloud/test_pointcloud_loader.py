"""Point-cloud file formats, sampling, normalization, options, and the bad-input table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from anybind.errors import InputError, InputFileError
from anybind.modalities.pointcloud import PointCloudModality
from anybind.modalities.pointcloud.config import load_preprocess


@pytest.fixture(scope="module")
def modality(tiny_model) -> PointCloudModality:  # type: ignore[no-untyped-def]
    return tiny_model.bound("pointcloud").modality


def cloud(count: int = 300, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 3)) * [1.0, 2.0, 3.0] + [5.0, 0.0, -1.0]


def write_pcd(path: Path, points: np.ndarray, binary: bool) -> None:
    header = (f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
              f"WIDTH {len(points)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(points)}\n"
              f"DATA {'binary' if binary else 'ascii'}\n")
    table = np.concatenate([points, np.ones((len(points), 1))], axis=1).astype("<f4")
    with open(path, "wb") as handle:
        handle.write(header.encode())
        if binary:
            handle.write(table.tobytes())
        else:
            handle.write("\n".join(" ".join(f"{v:.6f}" for v in row) for row in table).encode())


def write_all_formats(folder: Path) -> dict[str, Path]:
    points = cloud()
    files = {"npy": folder / "a.npy", "npy6": folder / "b.npy", "npz": folder / "c.npz", "pcd": folder / "d.pcd",
             "pcd-bin": folder / "e.pcd", "ply-points": folder / "f.ply"}
    np.save(files["npy"], points)
    np.save(files["npy6"], np.concatenate([points, np.ones_like(points)], axis=1))
    np.savez(files["npz"], points=points.astype(np.float32), labels=np.arange(3))
    write_pcd(files["pcd"], points, binary=False)
    write_pcd(files["pcd-bin"], points, binary=True)
    trimesh.PointCloud(points).export(files["ply-points"])
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    for suffix in ("obj", "off", "stl", "ply", "glb"):
        files[f"mesh-{suffix}"] = folder / f"box.{suffix}"
        box.export(files[f"mesh-{suffix}"])
    return files


def test_every_format_loads_to_fixed_count_in_unit_sphere(modality, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = write_all_formats(tmp_path)
    batch = modality.load(list(files.values()))
    assert batch.shape == (len(files), 1024, 3) and batch.dtype == torch.float32
    norms = batch.norm(dim=-1)
    torch.testing.assert_close(norms.amax(dim=1), torch.ones(len(files)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch.mean(dim=1), torch.zeros(len(files), 3), rtol=0, atol=1e-5)
    by_name = dict(zip(files, batch))
    # The same cloud from .npy (N x 3 or N x 6), .npz, ASCII/binary .pcd and a .ply point cloud.
    for name in ("npy6", "npz", "pcd", "pcd-bin", "ply-points"):
        torch.testing.assert_close(by_name[name], by_name["npy"], rtol=1e-4, atol=1e-4)
    # Box meshes are surface-sampled: every sample lies on a face of the (normalized) box.
    box = by_name["mesh-stl"].double()
    low, high = box.amin(dim=0), box.amax(dim=0)
    on_face = (((box - low).abs() < 1e-5) | ((box - high).abs() < 1e-5)).any(dim=1)
    assert bool(on_face.all())


def test_mesh_sampling_is_seeded(modality, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "box.obj"
    trimesh.creation.box().export(path)
    first, again = modality.load([path], seed=3), modality.load([path], seed=3)
    other = modality.load([path], seed=4)
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)
    assert modality.load([path], num_points=64).shape == (1, 64, 3)


def test_up_axis_y_turns_y_into_z(modality) -> None:  # type: ignore[no-untyped-def]
    tall = np.zeros((200, 3))
    tall[:, 1] = np.linspace(-1, 1, 200)  # a vertical line along y
    z_up = modality.load([tall], up_axis="y", num_points=200)[0]
    assert float(z_up[:, 2].abs().max()) == pytest.approx(1.0, abs=1e-5)
    assert float(z_up[:, :2].abs().max()) < 1e-6


def test_in_memory_arrays_tensors_batches_and_trimesh(modality) -> None:  # type: ignore[no-untyped-def]
    batch = torch.randn(3, 500, 3)
    assert len(modality.as_items(batch)) == 3 and len(modality.as_items(batch[0])) == 1
    assert modality.load(modality.as_items(batch)).shape == (3, 1024, 3)
    mesh = trimesh.creation.icosphere(subdivisions=1)
    assert len(modality.as_items(mesh)) == 1
    assert modality.load([mesh, cloud(5000)]).shape == (2, 1024, 3)


def test_ten_million_points_are_subsampled_first(modality) -> None:  # type: ignore[no-untyped-def]
    huge = np.random.default_rng(0).standard_normal((10_000_000, 3), dtype=np.float32)
    batch = modality.load([huge])
    assert batch.shape == (1, 1024, 3) and bool(torch.isfinite(batch).all())


def test_embed_files_with_options(tiny_model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = write_all_formats(tmp_path)
    vectors = tiny_model.embed("pointcloud", [files["npy"], files["mesh-glb"]], up_axis="y")
    assert vectors.shape == (2, tiny_model.dim)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(2))


def test_default_preprocess_constants_come_from_config() -> None:
    config = load_preprocess()
    assert config.num_points == 1024 and config.pointclip.camera_offset == 1.6
    assert config.realistic.depth_bins == 8 and config.realistic.pool_kernel == (1, 7, 7)
    assert config.realistic.gaussian_sigma == 3.0 and len(config.realistic.view_angles) == 10


def bad_files(folder: Path) -> dict[str, object]:
    (folder / "garbage.ply").write_bytes(b"this is not a ply file")
    (folder / "vertices.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    (folder / "empty.obj").write_text("")
    (folder / "text.npy").write_bytes(b"not numpy")
    (folder / "cloud.xyz2").write_text("0 0 0\n")
    (folder / "compressed.pcd").write_text("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 1\nDATA binary_compressed\n")
    (folder / "noxyz.pcd").write_text("FIELDS a b c\nSIZE 4 4 4\nTYPE F F F\nPOINTS 1\nDATA ascii\n1 2 3\n")
    np.save(folder / "flat.npy", np.zeros((10, 2)))
    return {name: folder / name for name in ("garbage.ply", "vertices.obj", "empty.obj", "text.npy", "cloud.xyz2",
                                             "compressed.pcd", "noxyz.pcd", "flat.npy")}


BAD_INPUTS = [
    (np.zeros((0, 3)), {}, InputError, r"`inputs\[0\]`: expected at least 2 points, got 0 points"),
    (np.zeros((1, 3)), {}, InputError, r"`inputs\[0\]`: expected at least 2 distinct points .*, got 1 point$"),
    (np.ones((5, 3)), {}, InputError, r"`inputs\[0\]`: expected at least 2 distinct points .*, got 5 points that all "
                                      r"coincide"),
    (np.array([[0.0, np.nan, 1.0], [1.0, 2.0, 3.0]]), {}, InputError, r"`inputs\[0\]`: expected finite coordinates, "
                                                                      r"got 1 point\(s\) with NaN/inf"),
    (np.array([[0.0, np.inf, 1.0], [1.0, 2.0, 3.0]]), {}, InputError, r"expected finite coordinates"),
    (np.zeros((10, 2)), {}, InputError, r"`inputs\[0\]`: expected an \[N, 3\] array of points .* got shape \(10, 2\)"),
    (np.array([["a", "b", "c"]]), {}, InputError, r"`inputs\[0\]`: expected real-valued point coordinates, got dtype <U1"),
    (np.zeros((4, 3), dtype=bool), {}, InputError, r"expected real-valued point coordinates, got dtype bool"),
    (42, {}, InputError, r"`inputs\[0\]`: expected point-cloud or mesh files .* got int 42"),
    ("missing.ply", {}, InputFileError, r"`inputs\[0\]`: a point-cloud or mesh file 'missing.ply' does not exist"),
    ("@garbage.ply", {}, InputFileError, r"`inputs\[0\]`: '.*garbage.ply' is not a readable .ply file"),
    ("@vertices.obj", {}, InputFileError, r"`inputs\[0\]` \(file '.*vertices.obj'\): expected a mesh with faces .* "
                                          r"got 3 vertices and 0 faces"),
    ("@empty.obj", {}, InputFileError, r"expected a mesh with faces .* got 0 vertices and 0 faces"),
    ("@text.npy", {}, InputFileError, r"'.*text.npy' is not a readable numpy file"),
    ("@cloud.xyz2", {}, InputFileError, r"unsupported point-cloud file type '.xyz2'"),
    ("@compressed.pcd", {}, InputFileError, r"uses DATA binary_compressed; only ascii and binary are supported"),
    ("@noxyz.pcd", {}, InputFileError, r"has no x, y, z fields"),
    ("@flat.npy", {}, InputError, r"`inputs\[0\]` \(file '.*flat.npy'\): expected an \[N, 3\] array .* shape \(10, 2\)"),
    (np.zeros((4, 3)) + np.arange(3), {"up_axis": "x"}, InputError, r"`up_axis`: expected one of 'z', 'y', got 'x'"),
    (cloud(), {"num_points": 0}, InputError, r"`num_points`: expected an integer >= 2, got 0"),
    (cloud(), {"seed": "zero"}, InputError, r"`seed`: expected an integer, got 'zero'"),
    (cloud(), {"colour": True}, InputError, r"pointcloud inputs take options .*; got unknown colour"),
]


@pytest.mark.parametrize("item, options, error, message", BAD_INPUTS)
def test_bad_inputs(modality, tmp_path, item, options, error, message) -> None:  # type: ignore[no-untyped-def]
    files = bad_files(tmp_path)
    if isinstance(item, str) and item.startswith("@"):
        item = files[item[1:]]
    with pytest.raises(error, match=message):
        modality.load([item], **options)


def test_empty_batch_is_rejected(tiny_model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=r"`inputs` for modality 'pointcloud': .* got an empty batch"):
        tiny_model.embed("pointcloud", torch.zeros(0, 10, 3))
