"""The shipped recipes (configs/recipes/*.yaml) parse, name registered encoders, and run on tiny data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import anybind
from anybind.config import read_data_file, configs_dir, from_dict
from anybind.registry import get_encoder, get_modality
from anybind.train import bind, load_bind_config

# Binding recipes; anchor recipes (`kind: lit`, for `anybind train-anchor`) are tested with the LiT anchor.
RECIPES = sorted(p for p in (configs_dir() / "recipes").glob("*.yaml") if "kind" not in read_data_file(p))
BUILT_IN = ("audio", "pointcloud", "depth")


def test_every_built_in_trainable_modality_has_a_recipe() -> None:
    covered = {load_bind_config(path).modality for path in RECIPES}
    assert covered >= set(BUILT_IN)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_names_registered_parts(path: Path) -> None:
    config = load_bind_config(path)
    assert config.encoder in anybind.list_encoders(config.modality)
    encoder_cls = get_encoder(config.modality, config.encoder)
    from_dict(encoder_cls.Config, config.encoder_args, f"{path.name}: encoder_args")
    modality_cls = get_modality(config.modality)
    if modality_cls.Preprocess is not None and isinstance(config.preprocess, str):
        from anybind.config import find_named_config

        find_named_config(f"preprocess/{config.modality}", config.preprocess, "preprocess")


def _write_inputs(modality: str, folder: Path, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        if modality == "audio":
            import soundfile

            name = f"clip{index}.wav"
            soundfile.write(folder / name, (0.1 * rng.normal(size=8000)).astype(np.float32), 16000)
        elif modality == "depth":
            name = f"depth{index}.npy"
            np.save(folder / name, rng.uniform(0.5, 4.0, size=(48, 64)).astype(np.float32))
        else:
            name = f"cloud{index}.npy"
            np.save(folder / name, rng.normal(size=(256, 3)).astype(np.float32))
        names.append(name)
    return names


@pytest.mark.parametrize("recipe", ["audio-cnn", "depth-cnn", "pointcloud-projection"])
def test_recipe_runs_two_steps_on_tiny_data(recipe: str, base_model, tiny_anchor_file, tmp_path: Path) -> None:
    path = configs_dir() / "recipes" / f"{recipe}.yaml"
    config = load_bind_config(path)
    names = _write_inputs(config.modality, tmp_path, 4)
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("input,caption\n" + "".join(f"{n},caption number {i}\n" for i, n in enumerate(names)))
    import dataclasses

    encoder_args = dict(config.encoder_args)
    if config.modality == "audio":
        encoder_args["architecture"] = "cnn-tiny"
    small = dataclasses.replace(
        config, model=str(tiny_anchor_file), output_dir=str(tmp_path / "run"), encoder_args=encoder_args,
        data=dataclasses.replace(config.data, manifest=str(manifest), val_fraction=0.0,
                                 anchor_cache_dir=str(tmp_path / "cache")),
        train=dataclasses.replace(config.train, steps=2, epochs=None, batch_size=2, warmup_steps=1, device="cpu",
                                  precision="fp32"),
        log=dataclasses.replace(config.log, tensorboard=False, progress=False))
    result = bind(small, base_model=base_model)
    assert result.step == 2 and np.isfinite(result.train_loss)
    bundle = anybind.load(result.bundle_dir, device="cpu")
    vectors = bundle.embed(config.modality, [str(tmp_path / n) for n in names[:2]])
    assert vectors.shape == (2, base_model.dim)
