"""The CLI remembers the model that built an index: `search` and `index add` use it unless --model overrides."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from anybind.cli import main
from anybind.config import configs_dir


def test_search_and_add_use_the_model_recorded_at_build(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copyfile(configs_dir() / "presets" / "tiny.yaml", work / "my-model.yaml")
    monkeypatch.chdir(work)
    assert main(["index", "build", "idx", "--model", "my-model.yaml", "-i", "text", "a red car", "a dog",
                 "--device", "cpu", "--json"]) == 0
    manifest = json.loads((work / "idx" / "manifest.json").read_text())
    assert manifest["model"] == str(work / "my-model.yaml")  # absolute: valid from any folder

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (work / "my-model.yaml").rename(work / "moved.yaml")  # proves search loads what the manifest names
    capsys.readouterr()
    assert main(["search", str(work / "idx"), "a red car", "--device", "cpu"]) == 2
    assert "my-model.yaml" in capsys.readouterr().err
    (work / "moved.yaml").rename(work / "my-model.yaml")
    capsys.readouterr()
    assert main(["search", str(work / "idx"), "a red car", "-k", "1", "--device", "cpu", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["hits"][0]["source"] == "a red car"
    assert main(["index", "add", str(work / "idx"), "-i", "text", "a lamp", "--device", "cpu", "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["count"] == 3 and added["model"] == str(work / "my-model.yaml")
