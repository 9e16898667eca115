"""`import anybind` and `anybind.load("tiny")` never touch the network."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

BLOCK_SOCKETS = """
import socket
def refuse(*args, **kwargs):
    raise RuntimeError(f"network access attempted: {args!r}")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
"""


def run_without_network(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter whose sockets refuse to connect (no HF_HUB_OFFLINE help)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return subprocess.run([sys.executable, "-c", BLOCK_SOCKETS + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env=env)


def test_import_and_tiny_embed_work_with_sockets_blocked() -> None:
    result = run_without_network("""
        import torch, anybind
        model = anybind.load("tiny", device="cpu")
        for name in model.modalities:
            pass
        print(model.embed("text", ["a dog"]).shape, model.embed("image", torch.rand(1, 3, 64, 64)).shape)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "network access attempted" not in result.stderr


def test_the_blocker_really_blocks() -> None:
    result = run_without_network("""
        import urllib.request
        urllib.request.urlopen("http://127.0.0.1:9", timeout=2)
    """)
    assert result.returncode != 0 and "network access attempted" in result.stderr
