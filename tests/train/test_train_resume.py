"""Checkpoints and `--resume`: an interrupted run ends where an uninterrupted one does; run-folder guards."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from anybind.errors import AnchorMismatchError, ConfigError, InputError
from anybind.train import bind
from anybind.train.checkpoints import CheckpointManager
from anybind.train.run_dir import read_metrics

STEPS = 8


def _recipe(toy, toy_data: Path, tiny_anchor_file: Path, folder: Path, **overrides):  # type: ignore[no-untyped-def]
    # dropout 0.1 (toy default) makes the RNG state part of what resume must restore
    base = {"model": str(tiny_anchor_file), "train": {"steps": STEPS, "warmup_steps": 2, "weight_decay": 0.1},
            "checkpoint": {"every_steps": 2, "keep_last": 2}, "eval": {"every_steps": 4},
            "log": {"every_steps": 1}}
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return toy.recipe(folder, toy_data, **base)


def _final_encoder(result) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    return CheckpointManager(result.output_dir / "checkpoints").load_latest()["encoder"]


def test_stop_and_resume_equals_uninterrupted(toy, toy_data, base_model, tiny_anchor_file, tmp_path: Path) -> None:
    whole = bind(_recipe(toy, toy_data, tiny_anchor_file, tmp_path / "whole"), base_model=base_model)
    config = _recipe(toy, toy_data, tiny_anchor_file, tmp_path / "split")
    first = bind(config, stop_after=3, base_model=base_model)
    assert first.step == 3 and first.bundle_dir is None
    second = bind(config, resume=True, base_model=base_model)
    assert second.step == STEPS and second.bundle_dir is not None
    expected, got = _final_encoder(whole), _final_encoder(second)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
    assert second.logit_scale == pytest.approx(whole.logit_scale, rel=1e-6)
    rows = read_metrics(second.output_dir)
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))  # no duplicated or lost rows
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in read_metrics(whole.output_dir)],
                                                            rel=1e-5)
    kept = CheckpointManager(second.output_dir / "checkpoints").paths()
    assert [p.name for p in kept] == ["step-00000006.safetensors", "step-00000008.safetensors"]


def test_output_folder_guards(toy, toy_data, base_model, tiny_anchor_file, tmp_path: Path) -> None:
    config = _recipe(toy, toy_data, tiny_anchor_file, tmp_path, train={"steps": 1})
    bind(config, base_model=base_model)
    with pytest.raises(InputError, match=r"already holds this run.*--resume.*--overwrite"):
        bind(config, base_model=base_model)
    changed = _recipe(toy, toy_data, tiny_anchor_file, tmp_path, train={"steps": 1, "lr": 0.1})
    with pytest.raises(InputError, match=r"already holds a different run \(differs in train\.lr\)"):
        bind(changed, base_model=base_model)
    with pytest.raises(ConfigError, match=r"cannot resume .* differs in train\.lr"):
        bind(changed, resume=True, base_model=base_model)
    assert bind(changed, overwrite=True, base_model=base_model).step == 1
    with pytest.raises(InputError, match=r"`--resume` and `--overwrite` exclude each other"):
        bind(changed, overwrite=True, resume=True, base_model=base_model)


def test_foreign_folder_and_anchor_change_are_refused(toy, toy_data, base_model, tiny_anchor_file,
                                                      tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    config = _recipe(toy, toy_data, tiny_anchor_file, tmp_path, output_dir=str(foreign))
    with pytest.raises(InputError, match=re.escape(f"`output_dir`: {str(foreign)!r} is not empty and holds no anybind run")):
        bind(config, overwrite=True, base_model=base_model)
    run = tmp_path / "run"
    config = _recipe(toy, toy_data, tiny_anchor_file, tmp_path, train={"steps": 2})
    bind(config, stop_after=1, base_model=base_model)
    text = (run / "run.json").read_text().replace(base_model.anchor.identity.weights_sha256, "0" * 64)
    (run / "run.json").write_text(text)
    with pytest.raises(AnchorMismatchError, match="cannot resume the run .* trained against anchor"):
        bind(config, resume=True, base_model=base_model)


KILL_STEPS = 12
SLOW_CHILD = """
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("anybind_tests_toy_modality", sys.argv[1])
toy = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = toy
spec.loader.exec_module(toy)
forward = toy.ToyMLP.forward
def slow_forward(self, batch):  # slow steps, so the parent can kill the run between two checkpoints
    time.sleep(0.15)
    return forward(self, batch)
toy.ToyMLP.forward = slow_forward
from anybind.train import bind
bind(json.loads(sys.argv[2]))
"""


def test_sigkill_between_checkpoints_then_resume_equals_uninterrupted(toy, toy_data, base_model, tiny_anchor_file,
                                                                      sigkill_after_rows, tmp_path: Path) -> None:
    import json
    import sys

    overrides = {"train": {"steps": KILL_STEPS}, "checkpoint": {"every_steps": 4, "keep_last": 3}}
    whole = bind(_recipe(toy, toy_data, tiny_anchor_file, tmp_path / "whole", **overrides), base_model=base_model)
    config = _recipe(toy, toy_data, tiny_anchor_file, tmp_path / "killed", **overrides)
    # killed past the step-4 checkpoint
    killed_at = sigkill_after_rows([sys.executable, "-c", SLOW_CHILD, toy.__file__, json.dumps(config)],
                                   Path(config["output_dir"]), rows=6)
    assert 6 <= killed_at < KILL_STEPS, killed_at  # killed between checkpoints 4 and 8 (or 8 and 12)
    debris = Path(config["output_dir"]) / "checkpoints" / ".step-00000008.safetensors.k1ll3d.tmp"
    debris.write_bytes(b"half a checkpoint")  # what a kill during an atomic write leaves
    resumed = bind(config, resume=True, base_model=base_model)
    assert not debris.exists() and not list(resumed.output_dir.rglob(".*.tmp"))
    assert resumed.step == KILL_STEPS and resumed.bundle_dir is not None
    expected, got = _final_encoder(whole), _final_encoder(resumed)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
    rows = read_metrics(resumed.output_dir)
    assert [int(r["step"]) for r in rows] == list(range(1, KILL_STEPS + 1))  # no duplicated or lost rows
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in read_metrics(whole.output_dir)],
                                                            rel=1e-5)
