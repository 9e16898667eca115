"""Fixtures of the ImageBind tests. The reference ImageBind code (PyPI ``imagebind-unofficial``, the official repository's code as is,
CC BY-NC-SA 4.0), imported for tests only: it builds small random-init models and writes their
state dicts in the official layout, and computes reference outputs.

Two shims let the 2023 code import and run on today's stack (neither touches model math):
pytorchvideo 0.1.5 imports ``torchvision.transforms.functional_tensor`` (renamed
``_functional_tensor`` in torchvision 0.17), and torchaudio >= 2.9 decodes files only through
torchcodec, so the reference's ``torchaudio.load`` is pointed at soundfile (same float32
``[channels, T]`` samples in [-1, 1] for PCM WAV).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

TINY = dict(out_embed_dim=32, **{f"{m}_{k}": v for m in ("vision", "text", "audio", "depth", "thermal", "imu")
                                 for k, v in (("embed_dim", 64), ("num_blocks", 2), ("num_heads", 4))})


def import_reference() -> ModuleType:
    """The reference ``imagebind`` package (with the shims of the module docstring)."""
    import torchvision.transforms._functional_tensor as functional_tensor

    sys.modules.setdefault("torchvision.transforms.functional_tensor", functional_tensor)
    import imagebind
    import imagebind.data

    def load_with_soundfile(path: str, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, int]:
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return torch.from_numpy(data.T.copy()), rate

    imagebind.data.torchaudio.load = load_with_soundfile  # only the reference's data module uses it this way
    return imagebind


def tiny_reference_model(seed: int = 0) -> torch.nn.Module:
    """A reference `ImageBindModel` with every tower 64 wide, 2 blocks, 4 heads, 32-d output (eval mode)."""
    import_reference()
    from imagebind.models.imagebind_model import ImageBindModel

    torch.manual_seed(seed)
    return ImageBindModel(**TINY).eval()


def write_tiny_checkpoint(path: Path, seed: int = 0, drop: tuple[str, ...] = ()) -> torch.nn.Module:
    """Save a tiny reference model's state dict (official layout) to `path`, leaving out the keys of
    the modalities in `drop`; returns the model."""
    model = tiny_reference_model(seed)
    state = {k: v for k, v in model.state_dict().items() if k.split(".")[1] not in drop}
    torch.save(state, path)
    return model


@pytest.fixture(scope="session")
def reference() -> ModuleType:
    """The reference ``imagebind`` package."""
    return import_reference()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """(an official-layout checkpoint of a tiny reference model, that model). Read-only."""
    path = tmp_path_factory.mktemp("imagebind") / "imagebind_tiny.pth"
    return path, write_tiny_checkpoint(path)


def imagebind_spec(checkpoint: Path, **modalities: Any) -> dict[str, Any]:
    """A model config: the tiny ImageBind anchor from `checkpoint` plus `modalities` entries."""
    return {"anchor": {"kind": "imagebind", "checkpoint": str(checkpoint), "architecture": "tiny"},
            "modalities": modalities}


@pytest.fixture(scope="session")
def imagebind_model(tiny_checkpoint: tuple[Path, torch.nn.Module]):  # type: ignore[no-untyped-def]
    """The tiny checkpoint loaded by anybind with every ImageBind modality (CPU, read-only)."""
    import anybind

    return anybind.load(imagebind_spec(tiny_checkpoint[0], **IMAGEBIND_MODALITIES), device="cpu")


IMAGEBIND_MODALITIES: dict[str, Any] = {
    "audio": {"encoder": "imagebind", "preprocess": "imagebind-16k", "logit_scale": 20.0},
    "depth": {"encoder": "imagebind", "preprocess": "imagebind", "logit_scale": 5.0},
    "thermal": {"encoder": "imagebind", "preprocess": "imagebind", "logit_scale": 10.0},
    "imu": {"encoder": "imagebind", "preprocess": "imagebind", "logit_scale": 5.0},
}


@pytest.fixture(scope="session")
def ib() -> ModuleType:
    """This module, for its helpers (`imagebind_spec`, `write_tiny_checkpoint`, `IMAGEBIND_MODALITIES`):
    test modules cannot import a conftest under pytest's importlib mode."""
    return sys.modules[__name__]
