"""Run by test_train_ddp.py under torchrun: bind each recipe (JSON files given as arguments) in one
process group, with the toy modality registered."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from conftest import load_toy_module  # noqa: E402

if __name__ == "__main__":
    load_toy_module()
    import anybind
    from anybind.train import bind

    dist.init_process_group("gloo")
    recipes = [json.loads(Path(path).read_text()) for path in sys.argv[1:]]
    base_model = anybind.load(recipes[0]["model"], device="cpu")  # every recipe binds to the same base
    for recipe in recipes:
        bind(recipe, base_model=base_model)
    dist.destroy_process_group()
