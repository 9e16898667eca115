"""``anybind train``: one command binds from a recipe file; errors end with one line and exit code 2."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from anybind.cli import main


def test_train_command_binds_from_a_recipe_and_resumes(toy, toy_data, tiny_anchor_file, tmp_path: Path, capsys, caplog) -> None:
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(toy_data.read_text().replace("inputs/", str(toy_data.parent / "inputs") + "/")
                        .replace("images/", str(toy_data.parent / "images") + "/") + "missing.npy,,a lost caption\n")
    recipe = toy.recipe(tmp_path, manifest, model=str(tiny_anchor_file), train={"steps": 4},
                        data={"skip_bad_rows": True}, log={"tensorboard": True})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path), "--steps", "4", "--overwrite", "--stop-after", "2", "--no-progress"]) == 0
    captured = capsys.readouterr()
    hint = f"anybind train {shlex.quote(str(path))} --steps 4 --resume"  # the overrides kept, no --overwrite
    assert f"stopped at step 2; resume with: {hint}" in captured.out and "skipped rows: 1" in captured.out
    assert re.search(r"skipped .*line 130: `input` file '.*missing\.npy' does not exist", caplog.text)
    assert main([*shlex.split(hint)[1:], "--json"]) == 0  # the printed command, as a user would paste it
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 4 and Path(result["bundle_dir"], "bundle.json").is_file()
    assert result["skipped_rows"] == 1
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_train_command_reports_bad_recipes(tmp_path: Path, capsys) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"modality": "toyvec", "model": "tiny", "output_dir": "run", "epoch": 3,
                                    "data": {"manifest": "m.csv"}, "train": {"steps": 1}}))
    assert main(["train", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("anybind train: error:") and "'epoch'" in error and error.count("\n") == 1
