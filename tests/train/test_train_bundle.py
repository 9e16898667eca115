"""Bundle writing: anchor paths stay valid elsewhere, the config is validated, a rewrite replaces atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anybind.errors import ConfigError
from anybind.train.bundle import portable_anchor_spec, write_bundle

ANCHOR = {"kind": "openclip", "model": "ViT-B-32", "seed": 0}


def test_relative_anchor_files_become_absolute(tmp_path: Path) -> None:
    (tmp_path / "weights.pt").write_bytes(b"x")
    (tmp_path / "clip-folder").mkdir()
    spec = {"kind": "openclip", "model": "local-dir:clip-folder", "pretrained": "weights.pt", "name": "mine"}
    portable = portable_anchor_spec(spec, tmp_path)
    assert portable == {"kind": "openclip", "model": f"local-dir:{tmp_path / 'clip-folder'}",
                        "pretrained": str(tmp_path / "weights.pt"), "name": "mine"}
    assert portable_anchor_spec({"kind": "openclip", "pretrained": "laion2b_s34b_b79k"}, tmp_path)["pretrained"] == \
        "laion2b_s34b_b79k"  # a tag, not a file


def test_write_bundle_saves_weights_and_replaces_atomically(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    state = {"head.weight": torch.ones(2, 3)}
    write_bundle(folder, anchor_spec=ANCHOR, modalities={"audio": ({"encoder": "cnn", "logit_scale": 20.0}, state)},
                 name="first", info={"note": 1})
    data = json.loads((folder / "bundle.json").read_text())
    assert data["modalities"]["audio"]["weights"] == "weights/audio.safetensors"
    assert data["format"] == "anybind.model" and data["name"] == "first"
    write_bundle(folder, anchor_spec=ANCHOR, modalities={"audio": ({"encoder": "cnn"}, state)}, name="second")
    assert json.loads((folder / "bundle.json").read_text())["name"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no temp or old folders left


@pytest.mark.parametrize(("modalities", "message"), [
    ({"audio": ({"encoder": "cnn", "learning_rate": 1}, None)}, r"`modalities.audio`: unknown key\(s\) 'learning_rate'"),
    ({"text": ({}, None)}, r"`modalities.text` is served by the anchor"),
])
def test_invalid_bundles_are_refused_before_writing(tmp_path: Path, modalities: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        write_bundle(tmp_path / "bundle", anchor_spec=ANCHOR, modalities=modalities)
    assert not list(tmp_path.iterdir())
