"""Recipe parsing: unknown keys named, bad values named, relative paths resolved against the recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from anybind.errors import ConfigError, InputFileError
from anybind.train.config import BindConfig, load_bind_config, math_differences

MINIMAL: dict[str, Any] = {"modality": "audio", "model": "tiny", "output_dir": "runs/a",
                           "data": {"manifest": "pairs.csv"}, "train": {"steps": 10}}


def _with(**changes: Any) -> dict[str, Any]:
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in MINIMAL.items()}
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = config
        for parent in parents:
            target = target.setdefault(parent, {})
        target[key] = value
    return config


@pytest.mark.parametrize(("config", "message"), [
    (_with(learning_rate=0.1), r"unknown key\(s\) 'learning_rate'"),
    (_with(train__lr_max=0.1), r"`train`: unknown key\(s\) 'lr_max'"),
    (_with(data__skip_bad_row=True), r"unknown key\(s\) 'skip_bad_row' \(did you mean 'skip_bad_rows'\?\)"),
    ({k: v for k, v in MINIMAL.items() if k != "modality"}, r"missing required key `modality`"),
    (_with(train__steps=None), r"give exactly one of `train.steps` and `train.epochs`"),
    (_with(train__epochs=2), r"give exactly one of `train.steps` and `train.epochs`"),
    (_with(train__steps=0), r"`train.steps` must be >= 1, got 0"),
    (_with(train__batch_size=0), r"`train.batch_size` must be >= 1, got 0"),
    (_with(train__lr=-1), r"`train.lr` must be > 0, got -1"),
    (_with(train__precision="fp8"), r"`precision`: expected one of 'auto', 'fp32', 'bf16', got 'fp8'"),
    (_with(train__params="backbone"), r"`params`: expected one of 'all', 'head', got 'backbone'"),
    (_with(loss__kind="triplet"), r"`kind`: expected one of 'infonce', 'siglip', got 'triplet'"),
    (_with(data__val_fraction=1.0), r"`data.val_fraction` must be in \[0, 1\), got 1.0"),
    (_with(train__grad_clip=0), r"`train.grad_clip` must be > 0 or null"),
    (_with(train__steps="many"), r"`steps`: expected int, got str 'many'"),
])
def test_bad_recipes_are_named(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_bind_config(config)


def test_recipe_file_paths_resolve_against_its_folder(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "bundle.json").write_text("{}")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(_with(model="model", init_weights="w.safetensors")))
    config = load_bind_config(path)
    assert isinstance(config, BindConfig)
    assert config.model == str(tmp_path / "model")  # an existing folder next to the recipe
    assert config.output_dir == str(tmp_path / "runs" / "a")
    assert config.data.manifest == str(tmp_path / "pairs.csv")
    assert config.init_weights == str(tmp_path / "w.safetensors")
    assert load_bind_config(_with()).model == "tiny"  # a preset name stays a name


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        load_bind_config(tmp_path / "none.yaml")


def test_resume_may_change_only_harmless_settings() -> None:
    old = {"train": {"lr": 1.0, "device": "cpu"}, "eval": {"every_steps": 1}, "seed": 0}
    new = {"train": {"lr": 2.0, "device": "cuda"}, "eval": {"every_steps": 5}, "seed": 1}
    assert math_differences(old, new) == ["seed", "train.lr"]
