"""`anybind.train.lit.train_lit`: LiT training from arrays in memory on the shared loop, the bundle round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import anybind
from anybind.errors import InputError
from anybind.train.lit import save_lit_bundle, train_lit
from anybind.train.lit_config import LiTTrainConfig
from anybind.train.lit_data import encode_images


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from anybind.demo.world import generate_world

    world = generate_world(40, seed=5, config="default")
    config = LiTTrainConfig(tower="tiny", epochs=6, batch_size=16, lr=3e-3, warmup_steps=2, seed=1)
    result = train_lit(world.images[:32], world.captions[:32], config,
                       val_images=world.images[32:], val_captions=world.captions[32:])
    folder = save_lit_bundle(result, tmp_path_factory.mktemp("lit-bundle"), name="lit-test")
    return world, result, folder


def test_short_training_lowers_the_loss(trained) -> None:  # type: ignore[no-untyped-def]
    _, result, _ = trained
    losses = [record["loss"] for record in result.history]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.2
    assert {"text_to_image_r1", "chance_r1"} <= set(result.metrics)


def test_bundle_round_trip(trained) -> None:  # type: ignore[no-untyped-def]
    world, result, folder = trained
    model = anybind.load(folder, device="cpu")
    assert model.anchor.identity.kind == "lit" and model.anchor.identity.tag == "image-tower.safetensors"
    assert model.anchor.logit_scale == pytest.approx(result.logit_scale, rel=1e-6)
    pixels = torch.as_tensor(world.images[:4]).permute(0, 3, 1, 2).float() / 255
    loaded = model.embed("image", pixels)
    from anybind.modalities.image import tensor_transform

    expected = encode_images(result.tower, tensor_transform(pixels, model.anchor.image_preprocess))
    torch.testing.assert_close(loaded, expected, atol=2e-5, rtol=1e-4)
    assert anybind.load(folder, device="cpu").anchor_key == model.anchor_key


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"images": np.zeros((2, 8, 8, 3), np.uint8), "captions": ["a"]}, r"`captions`: expected one entry per image \(2\), got 1"),
    ({"images": np.zeros((1, 8, 8, 3), np.uint8), "captions": ["a"]}, r"`images`: contrastive training needs at least 2"),
    ({"images": np.zeros((2, 8, 8), np.uint8), "captions": ["a", "b"]}, r"`images`: expected uint8 \[N, H, W, 3\]"),
    ({"images": np.zeros((2, 8, 8, 3), np.uint8), "captions": ["a", ""]}, r"`captions\[1\]`: expected a non-empty string"),
])
def test_bad_training_inputs(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        train_lit(config=LiTTrainConfig(tower="tiny", epochs=1), **kwargs)
