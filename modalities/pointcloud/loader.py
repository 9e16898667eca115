"""Reading point clouds and meshes into fixed-size, unit-sphere-normalized ``[N, 3]`` arrays.

Files: ``.npy`` / ``.npz`` arrays ``N×3`` (``N×C`` with C > 3: extra columns such as normals or
colors are ignored), ``.pcd`` (ASCII or binary), ``.ply`` (a mesh when it has faces, else a point
cloud), and meshes ``.obj .off .stl .glb .gltf`` through trimesh, sampled on the surface with
area weighting. In memory: arrays/tensors ``[N, C]`` and trimesh objects.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anybind.errors import InputError, InputFileError
from anybind.modality import check_file, describe

MESH_SUFFIXES = (".obj", ".off", ".stl", ".glb", ".gltf")
ARRAY_SUFFIXES = (".npy", ".npz")
SUFFIXES = ARRAY_SUFFIXES + (".pcd", ".ply") + MESH_SUFFIXES
ACCEPTS = ("point-cloud or mesh files (" + " ".join(SUFFIXES) + "), [N, 3] / [N, C>3] arrays or tensors, "
           "a [B, N, 3] batch, or trimesh objects")
UP_AXES = ("z", "y")
# Memory bounds: a file or array may hold at most MAX_POINTS points (10M xyz in float64: 240 MB);
# files parsed as text or through trimesh may be at most MAX_PARSED_FILE_BYTES (their parsers keep
# several copies); .npy/.npz and binary PCD bodies are read as arrays, up to MAX_POINTS rows.
MAX_POINTS = 10_000_000
MAX_PARSED_FILE_BYTES = 256 * 2**20


def sample_points(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly `count` rows of ``[N, C]`` `points`: a random subset when N > count, all rows plus
    random repeats when N < count (repeats do not change a depth view's silhouette)."""
    total = points.shape[0]
    if total == count:
        return points
    if total > count:
        return points[np.sort(rng.choice(total, size=count, replace=False))]
    extra = rng.integers(0, total, size=count - total)
    return np.concatenate([points, points[extra]])


def normalize_to_unit_sphere(points: np.ndarray, argument: str, given: int | None = None) -> np.ndarray:
    """Center ``[N, 3]`` `points` on their centroid and scale so the farthest point has norm 1.

    `given` is how many points the user passed (before resampling), for the error message.
    """
    centered = points - points.mean(axis=0, keepdims=True)
    radius = float(np.sqrt((centered ** 2).sum(axis=1)).max())
    if not radius > 0:
        count = points.shape[0] if given is None else given
        got = "got 1 point" if count == 1 else f"got {count} points that all coincide"
        raise InputError(f"`{argument}`: expected at least 2 distinct points to scale into the unit sphere, {got}")
    return centered / radius


def y_up_to_z_up(points: np.ndarray) -> np.ndarray:
    """Rotate ``[N, 3]`` `points` by +90° about x so the input's y axis becomes z: (x, y, z) -> (x, -z, y)."""
    return np.stack([points[:, 0], -points[:, 2], points[:, 1]], axis=1)


def check_coordinates(array: Any, argument: str, source: Path | None = None) -> np.ndarray:
    """`array` as a finite ``[N, C >= 3]`` real array (numpy view of a tensor); otherwise raise
    `InputError` naming `argument` (and the `source` file the array came from)."""
    where = f"`{argument}`" + (f" (file {str(source)!r})" if source is not None else "")
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.dtype.kind not in "fiu":
        raise InputError(f"{where}: expected real-valued point coordinates, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[1] < 3:
        raise InputError(f"{where}: expected an [N, 3] array of points (extra columns are ignored), "
                         f"got shape {tuple(array.shape)}")
    if array.shape[0] == 0:
        raise InputError(f"{where}: expected at least 2 points, got 0 points")
    if array.shape[0] > MAX_POINTS:
        raise InputError(f"{where}: holds {array.shape[0]:,} points, more than the {MAX_POINTS:,} anybind reads "
                         "(anybind.modalities.pointcloud.loader.MAX_POINTS); subsample it first")
    if array.dtype.kind == "f" and not bool(np.isfinite(array[:, :3]).all()):
        bad = int((~np.isfinite(array[:, :3])).any(axis=1).sum())
        raise InputError(f"{where}: expected finite coordinates, got {bad} point(s) with NaN/inf")
    return array


def read_pcd(path: Path, argument: str) -> np.ndarray:
    """The x, y, z columns of a ``.pcd`` file (ASCII or binary) as ``[N, 3]`` float64.

    Points with NaN coordinates are dropped (PCL's convention for "no measurement").
    """
    with open(path, "rb") as handle:
        header: dict[str, list[str]] = {}
        while True:
            line = handle.readline(4096)
            if not line:
                raise InputFileError(f"`{argument}`: {str(path)!r} is not a PCD file (no DATA line in its header)")
            if len(header) > 64 or (len(line) == 4096 and not line.endswith(b"\n")):
                raise InputFileError(f"`{argument}`: {str(path)!r} is not a PCD file (its header has no DATA line "
                                     "within 64 lines of at most 4096 bytes)")
            text = line.decode("ascii", errors="replace").strip()
            if not text or text.startswith("#"):
                continue
            key, *values = text.split()
            header[key.upper()] = values
            if key.upper() == "DATA":
                break
        body_start = handle.tell()
    malformed = f"`{argument}`: {str(path)!r} has a malformed PCD header"
    for key in ("FIELDS", "SIZE", "TYPE"):
        if not header.get(key):
            raise InputFileError(f"{malformed}: no {key} line (expected a PCD v0.7 header: FIELDS, SIZE, TYPE, "
                                 "COUNT, WIDTH, HEIGHT, POINTS, DATA)")
    try:
        fields = header["FIELDS"]
        sizes = [int(v) for v in header["SIZE"]]
        types = header["TYPE"]
        counts = [int(v) for v in header.get("COUNT", ["1"] * len(fields))]
        points = int(header["POINTS"][0]) if "POINTS" in header else (
            int(header["WIDTH"][0]) * int(header.get("HEIGHT", ["1"])[0]))
        encoding = header["DATA"][0].lower()
    except KeyError as error:
        raise InputFileError(f"{malformed}: no {error.args[0]} line (and no POINTS)") from None
    except (IndexError, ValueError) as error:
        raise InputFileError(f"{malformed}: a SIZE/COUNT/WIDTH/HEIGHT/POINTS value is not an integer "
                             f"({error})") from None
    if not len(fields) == len(sizes) == len(types) == len(counts):
        raise InputFileError(f"{malformed}: FIELDS, SIZE, TYPE and COUNT list {len(fields)}, {len(sizes)}, "
                             f"{len(types)} and {len(counts)} values; expected one per field")
    if not 0 <= points <= MAX_POINTS:
        raise InputFileError(f"`{argument}`: PCD file {str(path)!r} declares {points:,} points; expected 0 to "
                             f"{MAX_POINTS:,} (anybind.modalities.pointcloud.loader.MAX_POINTS)")
    if encoding == "ascii" and path.stat().st_size > MAX_PARSED_FILE_BYTES:
        raise InputFileError(f"`{argument}`: ASCII PCD file {str(path)!r} is {path.stat().st_size:,} bytes, more than "
                             f"the {MAX_PARSED_FILE_BYTES:,} anybind parses as text; save it as binary PCD")
    with open(path, "rb") as handle:
        handle.seek(body_start)
        if encoding == "binary":
            itemsize = sum(size * count for size, count in zip(sizes, counts))
            body = handle.read(max(0, itemsize) * points)
        else:
            body = handle.read()
    if not all(axis in fields for axis in "xyz"):
        raise InputFileError(f"`{argument}`: PCD file {str(path)!r} has no x, y, z fields (fields: {fields})")
    if encoding == "ascii":
        columns = np.cumsum([0] + counts)
        rows = [r.split() for r in body.decode("ascii", errors="replace").splitlines() if r.strip()]
        try:
            table = np.array([[float(v) for v in r] for r in rows[:points]], dtype=np.float64)
        except ValueError as error:
            raise InputFileError(f"`{argument}`: PCD file {str(path)!r} has a malformed data row ({error})") from None
        if table.ndim != 2 or table.shape[1] < columns[-1]:
            raise InputFileError(f"`{argument}`: PCD file {str(path)!r} has rows shorter than its FIELDS")
        xyz = table[:, [int(columns[fields.index(axis)]) for axis in "xyz"]]
    elif encoding == "binary":
        kinds = {"F": "f", "I": "i", "U": "u"}
        try:
            dtype = np.dtype([(name, f"<{kinds[t]}{s}", (c,) if c > 1 else ())
                              for name, s, t, c in zip(fields, sizes, types, counts)])
        except (KeyError, TypeError, ValueError) as error:
            raise InputFileError(f"`{argument}`: PCD file {str(path)!r} has an unsupported field type or size "
                                 f"(TYPE {types}, SIZE {sizes}; {error})") from None
        if len(body) < dtype.itemsize * points:
            raise InputFileError(f"`{argument}`: PCD file {str(path)!r} is truncated "
                                 f"({len(body)} data bytes, expected {dtype.itemsize * points})")
        records = np.frombuffer(body, dtype=dtype, count=points)
        xyz = np.stack([records[axis].astype(np.float64) for axis in "xyz"], axis=1)
    else:
        raise InputFileError(f"`{argument}`: PCD file {str(path)!r} uses DATA {encoding}; only ascii and binary "
                             "are supported (re-save it uncompressed, e.g. with open3d or pcl_convert_pcd_ascii_binary)")
    return xyz[np.isfinite(xyz).all(axis=1)]


def read_array_file(path: Path, argument: str) -> np.ndarray:
    """The ``[N, C]`` array in a ``.npy`` file, or in a ``.npz`` (key ``points``, ``xyz``, or its only array)."""
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        raise InputFileError(f"`{argument}`: {str(path)!r} is not a readable numpy file: it does not start with the "
                             f".npy or .npz (zip) magic bytes (got {magic!r})")
    try:
        data = np.load(path, allow_pickle=False, mmap_mode="r")  # .npy: only the rows used are read
        if isinstance(data, np.ndarray):
            return data
        with data:
            keys = list(data.keys())
            key = next((k for k in ("points", "xyz", "pos") if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise InputFileError(f"`{argument}`: {str(path)!r} holds arrays {keys}; expected one array or a "
                                     "`points` key")
            member = data.zip.getinfo(f"{key}.npy") if f"{key}.npy" in data.zip.namelist() else None
            if member is not None and member.file_size > MAX_POINTS * 3 * 8 * 4:
                raise InputFileError(f"`{argument}`: array {key!r} in {str(path)!r} is {member.file_size:,} bytes "
                                     f"uncompressed; expected at most {MAX_POINTS:,} points")
            return data[key]
    except InputFileError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise InputFileError(f"`{argument}`: {str(path)!r} is not a readable numpy file ({error})") from None


def sample_mesh(mesh: Any, count: int, seed: int, argument: str, source: Path | None = None) -> np.ndarray:
    """`count` area-weighted surface samples (``[count, 3]`` float64) of a trimesh mesh or scene;
    raise `InputFileError` naming `argument` (and the `source` file) when it has no faces."""
    import trimesh

    where = f"`{argument}`" + (f" (file {str(source)!r})" if source is not None else "")
    if isinstance(mesh, trimesh.Scene):
        mesh = mesh.to_geometry() if mesh.geometry else None
    faces = getattr(mesh, "faces", None)
    vertices = getattr(mesh, "vertices", None)
    if faces is not None and len(faces) > 0 and float(mesh.area) > 0:
        samples, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
        return np.asarray(samples, dtype=np.float64)
    raise InputFileError(f"{where}: expected a mesh with faces of non-zero area to sample its surface, got "
                         f"{0 if vertices is None else len(vertices)} vertices and "
                         f"{0 if faces is None else len(faces)} faces")


def read_points(item: Any, argument: str, count: int, seed: int) -> np.ndarray:
    """One user item (path, array, tensor, trimesh object) -> a raw ``[N, C >= 3]`` array.

    Meshes are already surface-sampled to `count` points with `seed`.
    """
    import trimesh

    if isinstance(item, (trimesh.Trimesh, trimesh.Scene)):
        return sample_mesh(item, count, seed, argument)
    if isinstance(item, trimesh.PointCloud):
        return check_coordinates(np.asarray(item.vertices), argument)
    if isinstance(item, (np.ndarray, torch.Tensor)):
        return check_coordinates(item, argument)
    if not isinstance(item, (str, Path)) and not hasattr(item, "__fspath__"):
        raise InputError(f"`{argument}`: expected {ACCEPTS}; got {describe(item)}")
    path = check_file(item, argument, "a point-cloud or mesh")
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        return check_coordinates(read_array_file(path, argument), argument, path)
    if suffix == ".pcd":
        return check_coordinates(read_pcd(path, argument), argument, path)
    if suffix not in (".ply",) + MESH_SUFFIXES:
        raise InputFileError(f"`{argument}`: unsupported point-cloud file type {suffix or '(none)'!r} of "
                             f"{str(path)!r}; expected one of {' '.join(SUFFIXES)}")
    if path.stat().st_size > MAX_PARSED_FILE_BYTES:
        raise InputFileError(f"`{argument}`: {suffix} file {str(path)!r} is {path.stat().st_size:,} bytes, more than "
                             f"the {MAX_PARSED_FILE_BYTES:,} anybind parses (anybind.modalities.pointcloud.loader."
                             "MAX_PARSED_FILE_BYTES); decimate the mesh or save the points as .npy")
    try:
        loaded = trimesh.load(str(path))
    except Exception as error:  # trimesh raises many types (ValueError, IndexError, struct.error...)
        raise InputFileError(f"`{argument}`: {str(path)!r} is not a readable {suffix} file "
                             f"({type(error).__name__}: {error})") from None
    if isinstance(loaded, trimesh.PointCloud) and suffix == ".ply":
        return check_coordinates(np.asarray(loaded.vertices), argument, path)  # a face-less .ply is a point cloud
    return check_coordinates(sample_mesh(loaded, count, seed, argument, path), argument, path)


def prepare_points(raw: np.ndarray, *, count: int, seed: int, up_axis: str, normalize: bool,
                   argument: str) -> np.ndarray:
    """Raw ``[N, C]`` coordinates -> ``[count, 3]`` float32: subsample/repeat, z-up, unit sphere.

    Subsampling comes first, so a 10-million-point input costs memory for `count` points only.
    """
    rng = np.random.default_rng(seed)
    chosen = sample_points(raw, count, rng)[:, :3].astype(np.float64)
    if up_axis == "y":
        chosen = y_up_to_z_up(chosen)
    if normalize:
        chosen = normalize_to_unit_sphere(chosen, argument, given=raw.shape[0])
    elif raw.shape[0] < 2:
        raise InputError(f"`{argument}`: expected at least 2 points, got {raw.shape[0]}")
    return chosen.astype(np.float32)
