"""Checkpoints: nested states round-trip without pickle, the last K are kept, corrupt files are named."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from anybind.errors import CheckpointError
from anybind.train.checkpoints import (CheckpointManager, capture_rng_state, load_state, restore_rng_state,
                                       save_state)


def test_optimizer_and_scheduler_state_round_trip(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.9, 0.98))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "step": 7, "note": None, "pair": (1, "a")}
    loaded = load_state(save_state(tmp_path / "c.safetensors", state))
    assert loaded["step"] == 7 and loaded["note"] is None and loaded["pair"] == (1, "a")
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.98)
    assert set(loaded["optimizer"]["state"]) == {0, 1}  # integer keys survive
    fresh = torch.optim.AdamW(model.parameters(), lr=0.1)
    fresh.load_state_dict(loaded["optimizer"])
    torch.testing.assert_close(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_rng_states_restore_exactly(tmp_path: Path) -> None:
    state = load_state(save_state(tmp_path / "rng.safetensors", {"rng": capture_rng_state()}))
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng_state(state["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_manager_keeps_the_last_k(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    assert manager.load_latest() is None
    for step in (1, 2, 3):
        manager.save(step, {"step": step})
    assert [p.name for p in manager.paths()] == ["step-00000002.safetensors", "step-00000003.safetensors"]
    assert manager.load_latest() == {"step": 3}
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left


@pytest.mark.parametrize(("content", "message"), [
    (b"garbage", r"checkpoint '.*bad\.safetensors' is not a readable anybind checkpoint"),
    (None, r"checkpoint '.*bad\.safetensors' does not exist"),
])
def test_unreadable_checkpoints_are_named(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_state(path)


def test_unsupported_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot checkpoint a value of type object"):
        save_state(tmp_path / "x.safetensors", {"thing": object()})
