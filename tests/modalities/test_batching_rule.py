"""One batching rule per modality: how many items a lone array is, and clear errors for ambiguous shapes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from anybind.errors import InputError

RATE = 16000
rng = np.random.default_rng(0)
NOISE = (rng.standard_normal(RATE // 2) * 0.1).astype(np.float32)
STEREO_TC = np.stack([NOISE, -NOISE], axis=1)  # soundfile.read layout [T, 2]
DEPTH = (rng.uniform(0.5, 4.0, (24, 32))).astype(np.float32)

# (modality, inputs, loader options, expected vector count)
COUNTS = [
    ("audio", NOISE, {"sample_rate": RATE}, 1),
    ("audio", STEREO_TC, {"sample_rate": RATE}, 1),  # soundfile's [T, 2]: one stereo clip, not T clips
    ("audio", STEREO_TC.T.copy(), {"sample_rate": RATE}, 1),  # torchaudio's [2, T]: one clip, not 2
    ("audio", torch.from_numpy(STEREO_TC.T.copy()[:1]), {"sample_rate": RATE}, 1),  # torchaudio mono [1, T]
    ("audio", np.stack([NOISE] * 3), {"sample_rate": RATE, "batched": True}, 3),
    ("audio", np.stack([STEREO_TC.T] * 2), {"sample_rate": RATE, "batched": True}, 2),  # [N, C, T]
    ("audio", [STEREO_TC, NOISE], {"sample_rate": RATE}, 2),
    ("audio", np.stack([NOISE] * 8), {"sample_rate": RATE, "batched": False}, 1),  # one 8-channel clip
    ("depth", DEPTH, {}, 1),
    ("depth", np.stack([DEPTH] * 3), {}, 3),
    ("depth", DEPTH[None], {}, 1),
    ("image", torch.rand(3, 20, 20), {}, 1),
    ("image", torch.rand(2, 3, 20, 20), {}, 2),
    ("image", (rng.random((20, 20, 3)) * 255).astype(np.uint8), {}, 1),
    ("pointcloud", rng.standard_normal((200, 3)), {}, 1),
    ("pointcloud", rng.standard_normal((2, 200, 3)), {}, 2),
]


@pytest.mark.parametrize(("modality", "inputs", "options", "count"), COUNTS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(COUNTS)])
def test_lone_arrays_give_the_documented_number_of_vectors(tiny_model: Any, modality: str, inputs: Any,
                                                           options: dict, count: int) -> None:
    vectors = tiny_model.embed(modality, inputs, **options)
    assert vectors.shape == (count, tiny_model.dim)
    assert torch.isfinite(vectors).all()


BAD = [
    ("audio", np.stack([NOISE] * 3), {"sample_rate": RATE},
     r"`inputs`: a single ndarray of shape \(3, 8000\) .* is ambiguous for modality 'audio'.*batched=True"),
    ("audio", np.zeros((100, 200), np.float32), {"sample_rate": RATE}, r"ambiguous for modality 'audio'"),
    ("audio", np.zeros((2, 2, 100), np.float32), {"sample_rate": RATE},
     r"`inputs`: expected one clip .* got shape \(2, 2, 100\)"),
    ("depth", np.zeros((24, 32, 3), np.float32), {},
     r"`inputs`: a single ndarray of shape \(24, 32, 3\) .* is ambiguous for modality 'depth' \(one array is one "
     r"\[H, W\] map.*pass `batched=True`"),
    ("depth", np.zeros((24, 32, 3), np.float32), {"batched": False},
     r"`inputs\[0\]`: expected a \[H, W\] depth map, got shape \(24, 32, 3\)"),
    ("image", torch.rand(3, 20, 20) * 255, {},
     r"`inputs\[0\]`: expected a float tensor with values in \[0, 1\], got values in \[.*\] \(divide 0\.\.255 pixels "
     r"by 255\)"),
    ("image", (torch.rand(3, 20, 20) - 0.5) * 4, {}, r"values in \[0, 1\].*not mean/std-normalized"),
    ("image", torch.rand(3, 20, 20), {"batched": "yes"}, r"`batched`: expected True, False or None, got 'yes'"),
    ("image", [torch.rand(3, 20, 20)], {"batched": False}, r"`batched`: False applies to a single array"),
]


@pytest.mark.parametrize(("modality", "inputs", "options", "message"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_ambiguous_or_wrong_arrays_are_refused(tiny_model: Any, modality: str, inputs: Any, options: dict,
                                               message: str) -> None:
    with pytest.raises(InputError, match=message):
        tiny_model.embed(modality, inputs, **options)


@pytest.mark.parametrize(("name", "item"), [
    ("thermal", np.zeros((8, 8), np.float32)),
    ("imu", np.zeros((6, 2000), np.float32)),
])
def test_loaders_without_options_name_the_stray_option(name: str, item: np.ndarray) -> None:
    from anybind.registry import get_modality

    cls = get_modality(name)
    modality = cls(cls.resolve_preprocess(None, None), None)  # type: ignore[arg-type]
    assert modality.load([item]).shape[0] == 1
    with pytest.raises(InputError, match=rf"^{name} inputs take no options, got crop, scale$"):
        modality.load([item], scale=2, crop=True)
