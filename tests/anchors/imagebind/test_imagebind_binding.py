"""Binding to an ImageBind-format anchor with `anybind train`, and emergent cross-modal retrieval.

A tiny ImageBind checkpoint (official layout, written by the reference code) is the anchor. Its
audio projection is then fitted (least squares) so that each test sound lands on its paired
image, standing in for ImageBind's audio-image pretraining. A toy modality is bound to the
anchor on (toy vector, image) pairs only; toy and audio never meet, yet toy queries retrieve
their sounds: ImageBind's emergent retrieval, through anybind's trainer and index.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import soundfile
import torch
import yaml

import anybind
from anybind.train import bind

PAIRS = 16
TOY_MODULE = "anybind_tests_toy_modality"  # the name tests/train/conftest.py imports it under
AUDIO_PROJECTION = "modality_heads.audio.2.weight"


def load_toy_module() -> ModuleType:
    """tests/train/toy_modality.py (the ``toyvec`` modality), imported once under its fixed name."""
    if TOY_MODULE not in sys.modules:
        path = Path(__file__).parents[2] / "train" / "toy_modality.py"
        spec = importlib.util.spec_from_file_location(TOY_MODULE, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[TOY_MODULE] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[TOY_MODULE]


def write_sounds(folder: Path, count: int) -> list[str]:
    rng = np.random.default_rng(5)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        t = np.arange(16000) / 16000
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.1 * rng.normal(size=t.size)
        paths.append(str(folder / f"s{index:02d}.wav"))
        soundfile.write(paths[-1], wave.astype(np.float32), 16000)
    return paths


def model_config(path: Path, checkpoint: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "anchor": {"kind": "imagebind", "checkpoint": str(checkpoint), "architecture": "tiny"},
        "modalities": {"audio": {"encoder": "imagebind", "preprocess": "imagebind-16k", "logit_scale": 20.0}}}))
    return path


def align_audio_projection(model: anybind.BoundModel, checkpoint: Path, out: Path, sounds: list[str],
                           images: list[str]) -> Path:
    """Write `checkpoint` (loaded as `model`) with its audio projection fitted so sound i embeds as image i."""
    features: list[torch.Tensor] = []
    hook = model.encoder("audio").tower.head.proj.register_forward_hook(lambda m, i, o: features.append(i[0]))
    model.embed("audio", sounds)
    hook.remove()
    clips = torch.cat(features).view(len(sounds), -1, features[0].shape[-1])[:, 0]  # a 1 s sound: 3 equal clips
    targets = model.embed("image", images).as_subclass(torch.Tensor)
    state = torch.load(checkpoint, weights_only=True)
    state[AUDIO_PROJECTION] = torch.linalg.lstsq(clips, targets).solution.T.contiguous()
    torch.save(state, out)
    return out


def test_toy_modality_bound_to_imagebind_retrieves_imagebind_audio(tiny_checkpoint, tmp_path: Path) -> None:
    toy = load_toy_module()
    base_file = model_config(tmp_path / "imagebind-tiny.yaml", tiny_checkpoint[0])
    data = tmp_path / "data"
    random_init = anybind.load(base_file, device="cpu")
    manifest = toy.make_dataset(data, random_init, captions_count=0, images_count=PAIRS, noise=0.01)
    images = sorted(str(p) for p in (data / "images").glob("*.png"))
    sounds = write_sounds(data / "sounds", PAIRS)
    aligned = align_audio_projection(random_init, tiny_checkpoint[0], tmp_path / "imagebind_aligned.pth", sounds,
                                     images)
    base_file = model_config(tmp_path / "imagebind-aligned.yaml", aligned)
    base = anybind.load(base_file, device="cpu")
    audio = base.embed("audio", sounds)
    assert bool(((audio @ base.embed("image", images).T).argmax(dim=1) == torch.arange(PAIRS)).all())

    run = bind(toy.recipe(tmp_path, manifest, model=str(base_file),
                          data={"manifest": str(manifest), "val_fraction": 0.0,
                                "anchor_cache_dir": str(tmp_path / "anchor-cache")},
                          train={"batch_size": PAIRS, "steps": 40, "lr": 2e-2, "warmup_steps": 2}), base_model=base)

    model = anybind.load(run.bundle_dir, device="cpu")
    assert set(model.modalities) >= {"audio", "toyvec", "image", "text"}
    index = anybind.Index.build(model, {"audio": sounds, "image": images})
    inputs = sorted(str(p) for p in (data / "inputs").glob("*.npy"))
    hits = index.search(model.embed("toyvec", inputs), k=1, modality="audio")
    found = [hits.metadata[query][0]["source"] for query in range(PAIRS)]
    recall = float(np.mean([Path(hit).name == Path(sound).name for hit, sound in zip(found, sounds)]))
    assert recall > 1 / PAIRS + 0.4, f"toy -> audio R@1 {recall:.2f}"

    licenses = yaml.safe_load((run.bundle_dir / "bundle.json").read_text())["info"]["licenses"]
    assert licenses[0]["license"] == "CC BY-NC-SA 4.0" and licenses[0]["commercial_use"] is False
    assert any(row.get("modality") == "toyvec" and row["trained_against"] == ["CC BY-NC-SA 4.0"] for row in licenses)
