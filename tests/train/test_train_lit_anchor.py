"""``anybind train-anchor``: LiT training from an image-caption manifest, resume, bundle, recipe errors."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import anybind
from anybind.train.lit import train_anchor
from anybind.train.lit_config import load_lit_recipe
from anybind.cli import main
from anybind.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from anybind.demo.world import generate_world

    folder = tmp_path_factory.mktemp("world")
    generate_world(30, seed=4, out_dir=folder)
    return folder


def _recipe(world_dir: Path, output: Path, **train: object) -> dict:
    return {"output_dir": str(output), "progress": False, "checkpoint_every_steps": 2,
            "data": {"manifest": str(world_dir / "pairs" / "image-caption.csv"),
                     "text_cache_dir": str(output.parent / "text-cache")},
            "train": {"tower": "tiny", "steps": 4, "batch_size": 8, "warmup_steps": 1, **train}}


def test_resumed_run_equals_uninterrupted_run(world_dir: Path, tmp_path: Path) -> None:
    whole = train_anchor(_recipe(world_dir, tmp_path / "whole"))
    assert whole.steps == 4 and whole.bundle_dir is not None
    first = train_anchor(_recipe(world_dir, tmp_path / "split"), stop_after=2)
    assert first.steps == 2 and first.bundle_dir is None
    second = train_anchor(_recipe(world_dir, tmp_path / "split"), resume=True)
    assert second.resumed_from == 2 and second.bundle_dir is not None
    a = load_file(str(whole.bundle_dir / "anchor" / "image-tower.safetensors"))
    b = load_file(str(second.bundle_dir / "anchor" / "image-tower.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    model = anybind.load(second.bundle_dir, device="cpu")
    assert model.anchor.identity.kind == "lit" and model.embed("text", ["a cube"]).shape == (1, 384)
    assert (tmp_path / "text-cache").is_dir()  # caption vectors were cached


def test_cli_trains_and_refuses_to_clobber(world_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import yaml

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(world_dir, tmp_path / "run", steps=2)))
    assert main(["train-anchor", str(recipe), "--steps", "2", "--stop-after", "1", "--no-progress"]) == 0
    hint = f"anybind train-anchor {shlex.quote(str(recipe))} --steps 2 --resume"
    assert f"stopped; resume with: {hint}" in capsys.readouterr().out
    assert main([*shlex.split(hint)[1:], "--no-progress"]) == 0  # the printed command continues the run
    assert "bundle:" in capsys.readouterr().out
    assert main(["train-anchor", str(recipe)]) == 2
    assert "pass --resume to continue it or --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "openclip"}, r"`kind` must be 'lit'"),
    ({"train": {"steps": 0}}, r"`train.steps` must be >= 1, got 0"),
    ({"train": {"steps": None, "epochs": 0}}, r"give `train.steps` >= 1 or `train.epochs` > 0"),
    ({"train": {"batch_size": 1}}, r"`train.batch_size` must be >= 2, got 1"),
    ({"train": {"lr": 0}}, r"`train.lr` must be > 0, got 0"),
    ({"keep_last": 0}, r"`keep_last` must be >= 1, got 0"),
    ({"data": {"manifest": "m.csv", "val_fraction": 1.5}}, r"`data.val_fraction` must be in \[0, 1\), got 1.5"),
    ({"data": {"manifest": "m.csv", "num_workers": -1}}, r"`data.num_workers` must be >= 0, got -1"),
    ({"data": {"manifest": "m.csv", "prefetch_batches": 0}}, r"`data.prefetch_batches` must be >= 1, got 0"),
    ({"trian": {}}, r"unknown key\(s\) 'trian' \(did you mean 'train'\?\)"),
])
def test_bad_recipes(change: dict, message: str) -> None:
    recipe = {"output_dir": "out", "data": {"manifest": "m.csv"}, "train": {"steps": 2}}
    for key, value in change.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) and key in recipe else value
    with pytest.raises(ConfigError, match=message):
        load_lit_recipe(recipe)


def test_manifest_without_caption_column(world_dir: Path, tmp_path: Path) -> None:
    recipe = _recipe(world_dir, tmp_path / "run")
    recipe["data"]["manifest"] = str(world_dir / "pairs" / "audio-image.csv")
    with pytest.raises(InputError, match=r"lacks column\(s\) 'caption'"):
        train_anchor(recipe)


def test_shipped_recipe_parses() -> None:
    from anybind.config import configs_dir

    recipe = load_lit_recipe(configs_dir() / "recipes" / "anchor-lit.yaml")
    assert recipe.kind == "lit" and recipe.train.tower == "cnn64" and Path(recipe.data.manifest).is_absolute()


def test_images_are_decoded_once_across_runs(world_dir: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from anybind.modalities.image import ImageModality
    from anybind.train.lit_data import image_loader, load_all

    anchor = SimpleNamespace(image_preprocess=anybind.load("tiny", device="cpu").anchor.image_preprocess)
    paths = sorted((world_dir / "images").glob("*.png"))[:6]
    decoded: list[int] = []
    real_load = ImageModality.load

    def counting_load(self, items, **options):  # type: ignore[no-untyped-def]
        decoded.append(len(items))
        return real_load(self, items, **options)

    monkeypatch.setattr(ImageModality, "load", counting_load)
    first = load_all(image_loader(anchor, cache=True, cache_dir=str(tmp_path / "inputs")), paths)
    second = load_all(image_loader(anchor, cache=True, cache_dir=str(tmp_path / "inputs")), paths)  # a new run: from disk
    assert decoded == [6] and torch.equal(first, second)
    uncached = load_all(image_loader(anchor, cache=False), paths)
    assert decoded == [6, 6] and torch.equal(first, uncached)


KILL_STEPS = 12
SLOW_CHILD = """
import json, sys, time
from anybind.train.lit import LiTRun, train_anchor
train_step = LiTRun.train_step
def slow_step(self, pipeline=None):  # slow steps, so the parent can kill the run between two checkpoints
    time.sleep(0.15)
    return train_step(self, pipeline)
LiTRun.train_step = slow_step
train_anchor(json.loads(sys.argv[1]))
"""


def test_sigkill_between_checkpoints_then_resume_equals_uninterrupted(world_dir: Path, sigkill_after_rows,  # type: ignore[no-untyped-def]
                                                                      tmp_path: Path) -> None:
    """A LiT run killed between checkpoints (images decoded per step by a DataLoader worker, no input
    cache) resumes to the uninterrupted run's tower and logs steps 1..N once each."""
    import json
    import sys

    from anybind.train.run_dir import read_metrics

    def recipe(folder: Path) -> dict:
        settings = _recipe(world_dir, folder, steps=KILL_STEPS, precision="fp32")
        settings["data"].update(cache_inputs=False, num_workers=1)
        return {**settings, "checkpoint_every_steps": 4, "keep_last": 3}

    whole = train_anchor(recipe(tmp_path / "whole"))
    config = recipe(tmp_path / "killed")
    # killed past the step-4 checkpoint
    killed_at = sigkill_after_rows([sys.executable, "-c", SLOW_CHILD, json.dumps(config)], Path(config["output_dir"]),
                                   rows=6)
    assert 6 <= killed_at < KILL_STEPS, killed_at  # killed between checkpoints 4 and 8 (or 8 and 12)
    resumed = train_anchor(config, resume=True)
    assert resumed.resumed_from in (4, 8) and resumed.steps == KILL_STEPS and resumed.bundle_dir is not None
    assert whole.bundle_dir is not None
    expected = load_file(str(whole.bundle_dir / "anchor" / "image-tower.safetensors"))
    got = load_file(str(resumed.bundle_dir / "anchor" / "image-tower.safetensors"))
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)
    rows = read_metrics(resumed.output_dir)
    assert [int(r["step"]) for r in rows] == list(range(1, KILL_STEPS + 1))  # no duplicated or lost rows
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in read_metrics(whole.output_dir)],
                                                            rel=1e-5)
