"""Writing a `World` to disk: media files, per-split manifests and training-pair manifests.

Layout under ``out_dir``::

    images/obj-000000.png          RGB, S x S
    depth/obj-000000.png           16-bit PNG, millimetres, 0 = background (or .npy float32 metres)
    pointclouds/obj-000000.npy     [P, 3] float32 metres, object frame
    audio/obj-000000.wav           mono 16-bit PCM at the world's sample rate
    train.jsonl / val.jsonl / test.jsonl   one object per line: files, captions, labels
    train.csv / val.csv / test.csv         the same, captions joined with " | "
    pairs/image-caption.csv        input,caption,split  (one row per caption; train + val)
    pairs/<modality>-image.csv     input,image,split    for audio, pointcloud, depth (train + val)
    world.json                     seed, size, config name, classes, file formats

Paths inside manifests are relative to the manifest's folder. Manifests and ``world.json`` are
written last and atomically, so their presence means the media files are complete.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile
from PIL import Image

from anybind.atomic import atomic_write_bytes
from anybind.errors import InputError
from anybind.train.manifest import json_objects

if TYPE_CHECKING:
    from anybind.demo.world.generate import World

DEPTH_FORMATS = ("png16", "npy")
WORLD_FILE = "world.json"
PAIR_SPLITS = ("train", "val")  # the binding trainer's manifest splits; test stays for evaluation
BOUND_MODALITIES = {"audio": "audio", "pointcloud": "pointcloud", "depth": "depth"}  # pair name -> column
CSV_COLUMNS = ("id", "split", "image", "depth", "pointcloud", "audio", "caption", "captions",
               "shape", "material", "colour", "size", "size_m")


def _atomic_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _csv_text(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def depth_to_png16(depth: np.ndarray) -> np.ndarray:
    """``[H, W]`` float metres -> uint16 millimetres (0 stays 0 = no depth; clipped at 65.535 m)."""
    return np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)


def write_world(world: World, out_dir: str | Path, depth_format: str = "png16") -> dict[str, Path]:
    """Write `world`'s files under `out_dir` (see module docstring); returns manifest paths by name.

    Names: each split ("train", ...), ``"pairs/<name>"`` for each pair manifest, and ``"world"``.
    """
    if depth_format not in DEPTH_FORMATS:
        raise InputError(f"`depth_format`: expected one of {', '.join(DEPTH_FORMATS)}, got {depth_format!r}")
    root = Path(out_dir).expanduser()
    for folder in ("images", "depth", "pointclouds", "audio", "pairs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    depth_suffix = ".png" if depth_format == "png16" else ".npy"
    records: list[dict[str, Any]] = []
    for i, name in enumerate(world.ids):
        files = {"image": f"images/{name}.png", "depth": f"depth/{name}{depth_suffix}",
                 "pointcloud": f"pointclouds/{name}.npy", "audio": f"audio/{name}.wav"}
        Image.fromarray(world.images[i]).save(root / files["image"], compress_level=1)
        if depth_format == "png16":
            Image.fromarray(depth_to_png16(world.depth[i])).save(root / files["depth"], compress_level=1)
        else:
            np.save(root / files["depth"], world.depth[i])
        np.save(root / files["pointcloud"], world.points[i])
        soundfile.write(root / files["audio"], world.sounds[i], world.config.sample_rate, subtype="PCM_16")
        records.append({"id": str(name), "split": str(world.split[i]), **files,
                        "caption": world.captions[i][0], "captions": list(world.captions[i]),
                        "shape": str(world.shape[i]), "material": str(world.material[i]),
                        "colour": str(world.colour[i]), "size": str(world.size[i]),
                        "size_m": round(float(world.size_m[i]), 4)})
    written: dict[str, Path] = {}
    for split in world.config.splits:
        rows = [r for r in records if r["split"] == split]
        _atomic_text(root / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        _atomic_text(root / f"{split}.csv", _csv_text(CSV_COLUMNS, [{**r, "captions": " | ".join(r["captions"])}
                                                                   for r in rows]))
        written[split] = root / f"{split}.jsonl"
    paired = [r for r in records if r["split"] in PAIR_SPLITS]
    caption_rows = [{"input": f"../{r['image']}", "caption": text, "split": r["split"]}
                    for r in paired for text in dict.fromkeys(r["captions"])]
    _atomic_text(root / "pairs" / "image-caption.csv", _csv_text(("input", "caption", "split"), caption_rows))
    written["pairs/image-caption"] = root / "pairs" / "image-caption.csv"
    for pair_name, column in BOUND_MODALITIES.items():
        rows = [{"input": f"../{r[column]}", "image": f"../{r['image']}", "split": r["split"]} for r in paired]
        path = root / "pairs" / f"{pair_name}-image.csv"
        _atomic_text(path, _csv_text(("input", "image", "split"), rows))
        written[f"pairs/{pair_name}-image"] = path
    summary = {"format": "anybind.demo.world", "version": 1, "seed": world.seed, "n_objects": len(world),
               "counts": {s: int((world.split == s).sum()) for s in world.config.splits},
               "classes": {kind: list(world.class_names(kind)) for kind in ("shape", "material", "colour", "size")},
               "image_size": world.config.image_size, "sample_rate": world.config.sample_rate,
               "n_points": world.config.n_points, "depth_format": depth_format,
               "depth_units": "millimetres (uint16), 0 = background" if depth_format == "png16"
               else "metres (float32), 0 = background"}
    _atomic_text(root / WORLD_FILE, json.dumps(summary, indent=2) + "\n")
    written["world"] = root / WORLD_FILE
    return written


def read_objects(manifest: str | Path) -> list[dict[str, Any]]:
    """The object records of a split manifest (``train.jsonl`` ...), file paths made absolute."""
    path = Path(manifest).expanduser()
    if not path.is_file():
        raise InputError(f"`manifest`: world manifest {str(path)!r} does not exist")
    records = []
    for _, record in json_objects(path.read_text(encoding="utf-8").splitlines(), f"world manifest {str(path)!r}"):
        for column in ("image", "depth", "pointcloud", "audio"):
            record[column] = str(path.parent / record[column])
        records.append(record)
    return records
