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


def test_lit_anchor_loads_real_minilm_with_sockets_blocked_and_no_offline_variables() -> None:
    # The LiT anchor's text side is the real all-MiniLM-L6-v2 from its PyPI package: it must load in a fresh
    # interpreter with HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE unset (this file's runner strips them) and no sockets.
    result = run_without_network("""
        import os, anybind
        assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ
        model = anybind.load({"format": "anybind.model", "anchor": {"kind": "lit", "tower": "tiny"}}, device="cpu")
        vectors = model.embed("text", ["a ball", "a sphere", "a wooden table"])
        print(tuple(vectors.shape), round(float(vectors[0] @ vectors[1]), 3))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "network access attempted" not in result.stderr
    shape, cosine = result.stdout.split(") ")
    assert shape == "(3, 384" and abs(float(cosine) - 0.591) < 2e-3  # the real model: golden cosine (test_lit_anchor)
