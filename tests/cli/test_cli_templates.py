"""Prompt templates from a set name, a YAML/JSON/TXT file, or literal `--template` values (API and CLI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import anybind.cli.inputs as cli_embed
from anybind.cli import main
from anybind.config import load_templates
from anybind.errors import ConfigError, InputFileError
from anybind.zero_shot import class_text_vectors

LITERAL = ("a photo of a {}.", "a drawing of a {}.")


@pytest.fixture
def template_files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "t.txt").write_text("# my prompts\na photo of a {}.\n\na drawing of a {}.\n")
    (tmp_path / "t.yaml").write_text("templates:\n  - 'a photo of a {}.'\n  - 'a drawing of a {}.'\n")
    (tmp_path / "t.json").write_text(json.dumps({"templates": list(LITERAL)}))
    (tmp_path / "bad.txt").write_text("a photo\n")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    return {p.stem + p.suffix: p for p in tmp_path.iterdir()}


@pytest.mark.parametrize("name", ["t.txt", "t.yaml", "t.json"])
def test_template_files_load(template_files: dict[str, Path], name: str) -> None:
    assert load_templates(template_files[name]) == LITERAL
    assert load_templates(str(template_files[name])) == LITERAL


@pytest.mark.parametrize(("name", "error", "message"), [
    ("bad.txt", ConfigError, r"template file '.*bad.txt': template 1 must be a string with exactly one '\{\}', "
                             r"got 'a photo'"),
    ("empty.txt", ConfigError, r"template file '.*empty.txt': expected a non-empty list of templates"),
    ("missing.txt", InputFileError, r"template file '.*missing.txt' does not exist"),
    ("missing.yaml", InputFileError, r"template file '.*missing.yaml' does not exist"),
])
def test_bad_template_files(template_files: dict[str, Path], tmp_path: Path, name: str, error: type,
                            message: str) -> None:
    with pytest.raises(error, match=message):
        load_templates(tmp_path / name)


def test_cli_classify_takes_literal_and_file_templates(template_files: dict[str, Path], tmp_path: Path,
                                                       tiny_model: Any, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli_embed, "_load_model", lambda spec, device: tiny_model)
    seen: list[tuple[str, ...]] = []
    monkeypatch.setattr("anybind.zero_shot.class_text_vectors",
                        lambda model, names, templates, batch_size=None: seen.append(tuple(templates))
                        or class_text_vectors(model, names, templates, batch_size))
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    base = ["classify", "image", str(image), "--classes", "dog,cat", "--json"]
    assert main([*base, "--template", LITERAL[0], "--template", LITERAL[1]]) == 0
    literal = json.loads(capsys.readouterr().out)
    assert main([*base, "--templates", str(template_files["t.txt"])]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert seen == [LITERAL, LITERAL]
    assert literal[0]["top"][0]["probability"] == pytest.approx(from_file[0]["top"][0]["probability"])
    assert main([*base, "--template", "no placeholder"]) == 2
    assert "`templates[0]`: expected a string with exactly one '{}'" in capsys.readouterr().err
