"""DDP device choice: each rank binds its own GPU (set_device + device_id), testable without CUDA."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from anybind.train import distributed
from anybind.train.distributed import join_process_group, local_device


@pytest.mark.parametrize(("requested", "env", "expected"), [
    ("cuda", {"WORLD_SIZE": "4", "LOCAL_RANK": "3"}, "cuda:3"),
    ("cuda:0", {"WORLD_SIZE": "2", "LOCAL_RANK": "1"}, "cuda:1"),
    ("cuda", {}, "cuda"),
    ("cuda", {"WORLD_SIZE": "1", "LOCAL_RANK": "0"}, "cuda"),
    ("cpu", {"WORLD_SIZE": "2", "LOCAL_RANK": "1"}, "cpu"),
])
def test_local_device_follows_local_rank(requested: str, env: dict[str, str], expected: str) -> None:
    assert local_device(torch.device(requested), env) == torch.device(expected)


def test_cuda_rank_sets_its_device_before_nccl(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: calls.append(("init", kw)))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    device = local_device(torch.device("cuda"))
    assert join_process_group(device) is True
    assert calls == [("set_device", torch.device("cuda", 1)),
                     ("init", {"backend": "nccl", "device_id": torch.device("cuda", 1)})]


def test_cpu_rank_joins_gloo_without_touching_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: calls.append(("init", kw)))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    assert join_process_group(torch.device("cpu")) is True
    assert calls == [("init", {"backend": "gloo"})]
