"""CLI `embed`, `index build|add|info`, `search`, `classify`: end to end on files, with the tiny model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import anybind.cli.inputs as cli_embed
from anybind import Index
from anybind.cli import main


@pytest.fixture(autouse=True)
def reuse_tiny_model(monkeypatch: pytest.MonkeyPatch, tiny_model: Any) -> None:
    """Every command loads --model tiny; hand it the session's model instead of loading it again."""
    def load(spec: str, device: str | None) -> Any:
        assert spec == "tiny" and device in (None, "cpu")
        return tiny_model
    monkeypatch.setattr(cli_embed, "_load_model", load)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    (folder / "photos").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.jpg"):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / "photos" / name)
    (folder / "photos" / ".hidden.png").write_bytes(b"not an image")
    (folder / "captions.txt").write_text("a dog on a beach\n\na red car\n")
    return folder


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_build_search_add_info(files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index_path = str(tmp_path / "my.index")
    built = run_json(capsys, ["index", "build", index_path, "-i", "image", str(files / "photos"),
                              "-i", "text", "@" + str(files / "captions.txt"), "a lamp", "--device", "cpu",
                              "--batch-size", "2", "--backend", "fast"])
    assert built["count"] == 6 and built["modalities"] == {"image": 3, "text": 3} and built["backend"] == "fast"

    hits = run_json(capsys, ["search", index_path, "a red car", "-k", "2"])
    assert hits[0]["query"] == "a red car" and len(hits[0]["hits"]) == 2
    assert hits[0]["hits"][0]["source"] == "a red car" and hits[0]["hits"][0]["score"] == pytest.approx(1, abs=1e-4)

    image = str(files / "photos" / "b.png")
    hits = run_json(capsys, ["search", index_path, image, "--query-modality", "image", "--modality", "image",
                             "-k", "10", "--backend", "exact"])
    assert [h["modality"] for h in hits[0]["hits"]] == ["image"] * 3 and hits[0]["hits"][0]["source"] == image

    assert main(["search", index_path, "a dog", "-k", "3"]) == 0
    table = capsys.readouterr().out
    assert "query: a dog" in table and "rank" in table and "a dog on a beach" in table

    added = run_json(capsys, ["index", "add", index_path, "-i", "text", "one more caption"])
    assert added["count"] == 7 and added["modalities"]["text"] == 4
    info = run_json(capsys, ["index", "info", index_path])
    assert info["count"] == 7 and info["dim"] == 64 and info["anchor"].startswith("openclip:tiny")
    assert main(["index", "info", index_path]) == 0 and "7 vectors" in capsys.readouterr().out


def test_embed_writes_a_loadable_index(files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vectors"
    summary = run_json(capsys, ["embed", "image", str(files / "photos"), "--glob", "*.png", "--out", str(out)])
    assert summary["count"] == 2
    loaded = Index.load(out)
    assert loaded.vectors().shape == (2, 64) and loaded.metadata(0)["source"].endswith("a.png")
    assert np.load(next(out.glob("vectors-*.npy"))).shape == (2, 64)


def test_classify(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, ["classify", "image", str(files / "photos"), "--classes", "dog, cat, car", "--top", "2"])
    assert len(rows) == 3 and [len(r["top"]) for r in rows] == [2, 2, 2]
    assert {entry["class"] for r in rows for entry in r["top"]} <= {"dog", "cat", "car"}
    rows = run_json(capsys, ["classify", "image", str(files / "photos" / "a.png"), "--classes", "modelnet40"])
    assert len(rows[0]["top"]) == 3 and rows[0]["top"][0]["probability"] >= rows[0]["top"][1]["probability"]


@pytest.mark.parametrize(("argv", "message"), [
    (["search", "{index}", "a dog", "-k", "0"], r"`k`: expected a positive integer, got 0"),
    (["search", "{tmp}/nowhere.index", "a dog"], r"index '.*nowhere.index' does not exist"),
    (["search", "{index}", "x", "--modality", "audio"], r"no rows of modality 'audio'"),
    (["index", "build", "{tmp}/b.index", "-i", "image", "{tmp}/missing.png"],
     r"`--input image`: '.*missing.png' does not exist"),
    (["index", "build", "{tmp}/b.index", "-i", "image"], r"`--input image`: expected a modality followed by"),
    (["index", "build", "{tmp}/b.index", "-i", "smell", "{index}"], r"unknown modality 'smell'"),
    (["embed", "text", "hi", "--out", "{tmp}/e", "--batch-size", "0"], r"`--batch-size`: expected a positive"),
    (["classify", "image", "{index}", "--classes", "esc-50"], r"unknown class list 'esc-50'"),
    (["classify", "image", "{index}", "--classes", "dog,,cat"], r"`--classes`: expected comma-separated"),
    (["index", "build", "{tmp}/b.index", "-i", "text", "hi", "--memory-budget", "1GB"],
     r"`--memory-budget` applies to `--backend faiss`, got `--backend exact`"),
    (["index", "build", "{tmp}/b.index", "-i", "text", "hi", "--backend", "faiss", "--memory-budget", "lots"],
     r"`memory_budget`: expected a positive byte count"),
    (["search", "{other}", "a dog", "--model", "tiny"],
     r"`--model` 'tiny' has anchor openclip:tiny:.* but index .* holds anchor other:a"),
    (["search", "{other}", "a dog"], r"`--model`: index '.*other.index' does not record the model that built it"),
    (["index", "add", "{other}", "-i", "text", "hi"], r"`--model`: index '.*other.index' does not record the model"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Any,
                                          argv: list[str], message: str) -> None:
    for name, anchor in (("e.index", tiny_model.anchor_key), ("other.index", "other:anchor")):
        index = Index(anchor, 64)
        index.add(np.eye(64, dtype=np.float32)[:2], modality="text")
        index.model_spec = "tiny" if name == "e.index" else None  # other.index: as saved by an older anybind
        index.save(tmp_path / name)
    filled = [a.format(index=tmp_path / "e.index", other=tmp_path / "other.index", tmp=tmp_path) for a in argv]
    capsys.readouterr()
    assert main(filled) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith(f"anybind {argv[0]}: error: ")
    assert re.search(message, error), error


@pytest.mark.parametrize("command", [["embed"], ["index"], ["index", "build"], ["index", "add"], ["index", "info"],
                                     ["search"], ["classify"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "usage: anybind" in help_text
    if command != ["index"]:
        assert "--device" in help_text and "--batch-size" in help_text


def test_module_entry_point_reports_errors(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "anybind.cli", "index", "info", str(tmp_path / "none.index")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "anybind index: error: `path`: index" in done.stderr
