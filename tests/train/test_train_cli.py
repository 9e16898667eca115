"""``anybind train``: one command binds from a recipe file; errors end with one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from anybind.cli import main


def test_train_command_binds_from_a_recipe_and_resumes(toy, toy_data, tiny_anchor_file, tmp_path: Path, capsys) -> None:
    recipe = toy.recipe(tmp_path, toy_data, model=str(tiny_anchor_file), train={"steps": 4})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path), "--stop-after", "2", "--no-progress"]) == 0
    assert "resume with: anybind train" in capsys.readouterr().out
    assert main(["train", str(path), "--resume", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 4 and Path(result["bundle_dir"], "bundle.json").is_file()


def test_train_command_reports_bad_recipes(tmp_path: Path, capsys) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"modality": "toyvec", "model": "tiny", "output_dir": "run", "epoch": 3,
                                    "data": {"manifest": "m.csv"}, "train": {"steps": 1}}))
    assert main(["train", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("anybind train: error:") and "'epoch'" in error and error.count("\n") == 1
