"""Run by test_train_ddp.py under torchrun: bind each recipe (JSON files given as arguments) in one
process group, with the toy modality registered."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from conftest import load_toy_module  # noqa: E402

if __name__ == "__main__":
    load_toy_module()
    import anybind
    from anybind.train import bind

    from anybind.train.distributed import local_device

    dist.init_process_group("gloo")
    # The device choice bind() makes, on this rank's real torchrun environment (no GPU needed).
    print(json.dumps({"rank": dist.get_rank(), "cuda": str(local_device(torch.device("cuda"))),
                      "cpu": str(local_device(torch.device("cpu")))}), flush=True)
    recipes = [json.loads(Path(path).read_text()) for path in sys.argv[1:]]
    base_model = anybind.load(recipes[0]["model"], device="cpu")  # every recipe binds to the same base
    for recipe in recipes:
        bind(recipe, base_model=base_model)
    dist.destroy_process_group()
