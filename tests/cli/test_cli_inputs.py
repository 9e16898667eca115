"""`anybind.cli.inputs`: a command run on a random-init anchor says so on stderr (its vectors mean nothing)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import anybind
from anybind.cli import inputs


@pytest.mark.parametrize("tag, noted", [(None, True), ("ViT-B-32-openai", False), ("image-tower.safetensors", False)])
def test_random_init_anchor_is_noted(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                     tag: str | None, noted: bool) -> None:
    fake = SimpleNamespace(anchor=SimpleNamespace(identity=SimpleNamespace(tag=tag)))
    monkeypatch.setattr(anybind, "load", lambda spec, device=None: fake)
    assert inputs._load_model.__wrapped__("some-model", None) is fake
    err = capsys.readouterr().err
    assert ("model 'some-model' has a random-init anchor" in err) is noted
    assert ("pass --model" in err) is noted


def test_the_default_tiny_model_is_noted_once(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from anybind.cli import main

    inputs._load_model.cache_clear()
    assert main(["embed", "text", "a dog", "--out", str(tmp_path / "e")]) == 0
    assert capsys.readouterr().err.count("has a random-init anchor") == 1
