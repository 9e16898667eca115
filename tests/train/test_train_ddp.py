"""2-process DDP (gloo on CPU) gives the same losses and weights as 1 process on the same global batch.

The two workers are started the way torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT in the environment), without the launcher process, to save time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anybind.train import bind
from anybind.train.checkpoints import CheckpointManager
from anybind.train.run_dir import read_metrics

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_two_process_ddp_matches_one_process(toy, toy_data, base_model, tiny_anchor_file, tmp_path: Path) -> None:
    recipes = {}
    for kind in ("infonce", "siglip"):
        recipes[kind] = toy.recipe(
            tmp_path / kind, toy_data, model=str(tiny_anchor_file), encoder_args={"dropout": 0.0},
            loss={"kind": kind}, train={"steps": 3, "batch_size": 32, "warmup_steps": 1},
            log={"every_steps": 1}, data={"manifest": str(toy_data), "val_fraction": 0.25,
                                          "anchor_cache_dir": str(tmp_path / "cache-ddp")})
    paths = []
    for kind, recipe in recipes.items():
        ddp = dict(recipe, output_dir=str(tmp_path / kind / "ddp"))
        paths.append(tmp_path / f"{kind}.json")
        paths[-1].write_text(json.dumps(ddp))
    port = _free_port()
    workers = []
    for rank in range(2):
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", RANK=str(rank),
                   LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        workers.append(subprocess.Popen([sys.executable, str(WORKER), *map(str, paths)], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for rank, worker in enumerate(workers):
        stdout, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-3000:]
        chosen = json.loads(stdout.splitlines()[0])
        assert chosen == {"rank": rank, "cuda": f"cuda:{rank}", "cpu": "cpu"}  # each rank its own GPU

    for kind, recipe in recipes.items():
        single = bind(dict(recipe, output_dir=str(tmp_path / kind / "single")), base_model=base_model)
        ddp_dir = tmp_path / kind / "ddp"
        expected = [row["train_loss"] for row in read_metrics(single.output_dir)]
        got = [row["train_loss"] for row in read_metrics(ddp_dir)]
        assert got == pytest.approx(expected, abs=1e-4), kind
        assert expected[0] != pytest.approx(expected[-1], abs=1e-3)  # the weights did move
        ddp_weights = CheckpointManager(ddp_dir / "checkpoints").load_latest()["encoder"]
        single_weights = CheckpointManager(single.output_dir / "checkpoints").load_latest()["encoder"]
        for name, value in single_weights.items():
            torch.testing.assert_close(ddp_weights[name], value, rtol=1e-4, atol=1e-5)
        assert (ddp_dir / "bundle" / "bundle.json").is_file()
