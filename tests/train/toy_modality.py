"""A toy modality for the trainer tests: small ``.npy`` feature vectors, bound to the tiny anchor.

Imported by path (see conftest.py and ddp_worker.py) under one fixed module name, so the
registry sees one definition. `make_dataset` writes inputs that are a fixed random linear mix
of their partners' anchor vectors plus noise, so a linear encoder can learn the binding.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import anybind
from anybind.errors import InputFileError
from anybind.modality import Encoder, EncoderContext, Modality, ProjectionHead

NAME = "toyvec"
WORDS = ("red", "green", "blue", "small", "large", "round", "square", "fast", "slow", "loud", "quiet", "warm",
         "cold", "bright", "dark", "soft", "hard", "heavy", "light", "old", "new")
NOUNS = ("dog", "cat", "car", "tree", "house", "bird", "boat", "lamp", "chair", "drum", "river", "train")


@anybind.register_modality(NAME)
class ToyVectors(Modality):
    """``.npy`` files (or arrays) holding one float vector each -> ``[B, F]``."""

    accepts = ".npy files of 1-D float vectors"
    default_encoder = "mlp"

    def load(self, items: Sequence[Any], **options: Any) -> torch.Tensor:
        """Items -> ``[B, F]`` float32."""
        rows = []
        for index, item in enumerate(items):
            if isinstance(item, np.ndarray):
                rows.append(torch.from_numpy(item.astype(np.float32)))
                continue
            try:
                array = np.load(item, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise InputFileError(f"`inputs[{index}]`: {str(item)!r} is not a readable .npy file ({error})") from None
            rows.append(torch.from_numpy(np.asarray(array, dtype=np.float32)))
        return torch.stack(rows)


@dataclass(frozen=True)
class ToyMLPConfig:
    """Sizes of the toy encoder."""

    in_dim: int = 64
    hidden: int = 64
    dropout: float = 0.1


@anybind.register_encoder(NAME, "mlp")
class ToyMLP(Encoder):
    """Linear backbone + dropout + linear head."""

    Config = ToyMLPConfig

    def __init__(self, config: ToyMLPConfig, context: EncoderContext) -> None:
        super().__init__(config, context)
        self.backbone = nn.Sequential(nn.Linear(config.in_dim, config.hidden), nn.Dropout(config.dropout))
        self.head = ProjectionHead(config.hidden, context.dim)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.head(self.backbone(batch))


def captions(count: int, seed: int) -> list[str]:
    """`count` distinct short captions."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < count:
        text = f"a {rng.choice(WORDS)} {rng.choice(WORDS)} {rng.choice(NOUNS)} number {len(out)}"
        out.append(text)
    return out


def write_images(folder: Path, count: int, seed: int) -> list[Path]:
    """`count` random-noise 32x32 PNG files."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"img{index:03d}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def make_dataset(folder: Path, model: Any, *, captions_count: int = 96, images_count: int = 32, seed: int = 0,
                 noise: float = 0.02, fmt: str = "csv", split_column: bool = False) -> Path:
    """Write inputs + partners + a manifest under `folder`; returns the manifest path.

    Input i is ``anchor_vector(partner_i) @ M + noise`` for one fixed random ``[D, 64]`` M.
    """
    folder.mkdir(parents=True, exist_ok=True)
    texts = captions(captions_count, seed)
    images = write_images(folder / "images", images_count, seed) if images_count else []
    vectors = []
    if texts:
        vectors.append(model.embed("text", texts).as_subclass(torch.Tensor))
    if images:
        vectors.append(model.embed("image", [str(p) for p in images]).as_subclass(torch.Tensor))
    anchor = torch.cat(vectors).numpy()
    rng = np.random.default_rng(seed + 1)
    mix = rng.normal(size=(anchor.shape[1], 64)) / np.sqrt(anchor.shape[1])
    centered = anchor - anchor.mean(axis=0, keepdims=True)  # random-init anchors share a large common direction
    inputs = centered @ mix * 8 + rng.normal(scale=noise, size=(anchor.shape[0], 64))
    (folder / "inputs").mkdir(exist_ok=True)
    rows = []
    for index, vector in enumerate(inputs):
        name = f"inputs/x{index:03d}.npy"
        np.save(folder / name, vector.astype(np.float32))
        row = {"input": name, "image": "", "caption": ""}
        if index < len(texts):
            row["caption"] = texts[index]
        else:
            row["image"] = str(images[index - len(texts)].relative_to(folder))
        if split_column:
            row["split"] = "val" if index % 4 == 0 else "train"
        rows.append(row)
    manifest = folder / f"pairs.{fmt}"
    if fmt == "csv":
        with open(manifest, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        manifest.write_text("".join(json.dumps({k: v for k, v in r.items() if v}) + "\n" for r in rows))
    return manifest


def recipe(folder: Path, manifest: Path, **overrides: Any) -> dict[str, Any]:
    """A small binding recipe for the toy modality (nested `overrides` merge one level deep)."""
    config: dict[str, Any] = {
        "modality": NAME, "encoder": "mlp", "model": "tiny", "output_dir": str(folder / "run"),
        "data": {"manifest": str(manifest), "val_fraction": 0.25, "anchor_cache_dir": str(folder / "anchor-cache")},
        "train": {"batch_size": 32, "steps": 40, "lr": 5e-3, "warmup_steps": 4, "weight_decay": 0.0,
                  "device": "cpu", "num_threads": 1, "precision": "fp32"},
        "eval": {"every_steps": 0}, "checkpoint": {"every_steps": 0, "keep_last": 2},
        "log": {"every_steps": 5, "tensorboard": False, "progress": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


@anybind.register_modality(f"{NAME}-b")
class ToyVectorsB(ToyVectors):
    """A second toy modality (same loader), to bind one modality onto a bundle holding another."""

    default_encoder = "mlp"


@anybind.register_encoder(f"{NAME}-b", "mlp")
class ToyMLPB(ToyMLP):
    """The toy encoder, registered for the second toy modality."""
