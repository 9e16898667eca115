"""`anybind demo --device/--batch-size` reach every stage: LiT tower, base model, binding runs, evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import anybind
import anybind.demo.bundle as demo_bundle
import anybind.demo.evaluate as demo_evaluate
import anybind.train
from anybind.cli import main
from anybind.config import load_named
from anybind.demo.evaluate import Evaluation


class StopBuild(Exception):
    pass


def test_one_device_flows_through_the_whole_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(demo_bundle, "_build_world", lambda recipe, world_dir, progress: {})

    def build_anchor(recipe: Any, anchor: Any, world_dir: Path, anchor_dir: Path, progress: bool, device: str) -> Any:
        seen["lit"] = demo_bundle.lit_config(recipe, device).device
        return anchor_dir, {}

    def bind(config: dict[str, Any], **kwargs: Any) -> Any:
        seen["bind"] = config["train"]["device"]
        raise StopBuild

    monkeypatch.setattr(demo_bundle, "_build_anchor", build_anchor)
    monkeypatch.setattr(anybind, "load", lambda spec, device=None, **kw: seen.setdefault("base", device))
    monkeypatch.setattr(anybind.train, "bind", bind)
    with pytest.raises(StopBuild):
        demo_bundle.build_default_bundle(recipe="ci", home=tmp_path, progress=False, device="meta")
    assert seen == {"lit": "meta", "base": "meta", "bind": "meta"}


def test_recipe_device_is_overridden() -> None:
    recipe = load_named(demo_bundle.DemoRecipe, "demo", "ci", "demo recipe")
    settings = {"train": {"device": "cuda", "epochs": 1}}
    config = demo_bundle._bind_config("audio", settings, Path("w"), Path("a"), Path("o"), False, "cpu")
    assert config["train"] == {"device": "cpu", "epochs": 1}
    assert demo_bundle.lit_config(recipe, "cpu").device == "cpu"


def test_cli_passes_device_and_batch_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    calls: dict[str, Any] = {}
    monkeypatch.setattr(demo_bundle, "build_default_bundle",
                        lambda **kw: calls.setdefault("build", kw) and tmp_path / "bundle")
    monkeypatch.setattr(demo_evaluate, "evaluate_bundle", lambda bundle, **kw: calls.setdefault("evaluate", kw)
                        and Evaluation(metrics=[], test_records=[], info={}))
    assert main(["demo", "--recipe", "ci", "--device", "cpu", "--batch-size", "7", "--json",
                 "--report", str(tmp_path / "r.html")]) == 0
    json.loads(capsys.readouterr().out)
    assert calls["build"]["device"] == "cpu"
    assert calls["evaluate"] == {"device": "cpu", "batch_size": 7}
    assert main(["demo", "--batch-size", "0", "--json"]) == 2
    assert "`--batch-size`: expected a positive integer, got 0" in capsys.readouterr().err
