"""ImageBind's license (CC BY-NC-SA 4.0) is visible: `anybind info`, the model, and a one-time notice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import anybind
from anybind.cli import main


def test_info_shows_each_weights_file_license(ib, tiny_checkpoint, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "model.yaml"
    config.write_text(yaml.safe_dump(ib.imagebind_spec(tiny_checkpoint[0], imu=ib.IMAGEBIND_MODALITIES["imu"])))
    assert main(["info", "--model", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["anchor_weights_licenses"]["imagebind"].startswith("CC BY-NC-SA 4.0")
    (row,) = data["model"]["licenses"]
    assert row["file"] == str(tiny_checkpoint[0]) and row["license"] == "CC BY-NC-SA 4.0"
    assert row["commercial_use"] is False
    assert main(["info", "--model", str(config)]) == 0
    assert f"{tiny_checkpoint[0]}: CC BY-NC-SA 4.0, non-commercial" in capsys.readouterr().out


def test_loading_imagebind_weights_prints_the_notice_once(ib, tiny_checkpoint, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import anybind.anchors.imagebind as imagebind_anchor

    monkeypatch.setattr(imagebind_anchor, "_noticed", set())
    for _ in range(2):
        anybind.load(ib.imagebind_spec(tiny_checkpoint[0]), device="cpu")
    assert capsys.readouterr().err.count("CC BY-NC-SA 4.0: non-commercial use only") == 1
    anybind.load({"anchor": {"kind": "imagebind", "architecture": "tiny"}}, device="cpu")  # random init: no license
    assert anybind.load({"anchor": {"kind": "imagebind", "architecture": "tiny"}}).weights_licenses() == []
