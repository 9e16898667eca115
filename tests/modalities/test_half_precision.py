"""bf16/fp16 autocast on CPU: every built-in modality and encoder gives finite vectors close to fp32
(signal front ends run in float32 under autocast)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import anybind
from anybind.config import configs_dir

MINI_HTSAT = {"name": "mini", "embed_dim": 8, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 2]}
rng = np.random.default_rng(0)
# Quiet passages make the log-mel floor matter: half the clip is near-silent.
QUIET_CLIP = np.concatenate([rng.standard_normal(8000) * 0.1, rng.standard_normal(8000) * 1e-6]).astype(np.float32)
INPUTS: dict[str, tuple[Any, dict[str, Any]]] = {
    "image": ([torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0)) for _ in range(2)], {}),
    "text": (["a dog barking", "rain on a roof"], {}),
    "audio": ([QUIET_CLIP, QUIET_CLIP[::-1].copy()], {"sample_rate": 16000}),
    "pointcloud": ([rng.standard_normal((300, 3)), rng.uniform(-1, 1, (300, 3))], {}),
    "depth": ([rng.uniform(0.5, 4.0, (30, 40)).astype(np.float32), rng.uniform(1, 9, (30, 40)).astype(np.float32)],
              {}),
}


def _variant_config() -> dict[str, Any]:
    """The tiny preset with the other encoders: htsat (miniature) for audio, cnn for depth."""
    data = yaml.safe_load((configs_dir() / "presets" / "tiny.yaml").read_text())
    data = copy.deepcopy(data)
    data["modalities"]["audio"] = {"encoder": "htsat", "encoder_args": {"architecture": MINI_HTSAT}}
    data["modalities"]["depth"] = {"encoder": "cnn"}
    data["name"] = "tiny-variant"
    return data


@pytest.fixture(scope="module")
def variant_model() -> Any:
    return anybind.load(_variant_config(), device="cpu")


@pytest.fixture(params=["tiny", "variant"])
def model(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("tiny_model" if request.param == "tiny" else "variant_model")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("modality", list(INPUTS))
def test_half_precision_matches_fp32(model: Any, modality: str, precision: str) -> None:
    if modality in ("image", "text", "pointcloud") and model.config.name != "tiny":
        pytest.skip("the variant differs only in its audio and depth encoders")
    inputs, options = INPUTS[modality]
    model.precision = "fp32"
    reference = model.embed(modality, inputs, **options)
    model.precision = precision
    try:
        half = model.embed(modality, inputs, **options)
    finally:
        model.precision = "fp32"
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    cosine = (half * reference).sum(dim=-1)
    assert float(cosine.min()) >= 1 - 1e-2, (modality, model.encoder(modality).encoder_name, cosine.tolist())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_matches_cpu_fp32(tiny_model: Any, precision: str) -> None:
    on_gpu = anybind.load("tiny", device="cuda", precision=precision)
    for modality, (inputs, options) in INPUTS.items():
        got = on_gpu.embed(modality, inputs, **options)
        cosine = (got * tiny_model.embed(modality, inputs, **options)).sum(dim=-1)
        assert torch.isfinite(got).all() and float(cosine.min()) >= 1 - 1e-2, (modality, cosine.tolist())
