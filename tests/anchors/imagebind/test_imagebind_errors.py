"""Bad ImageBind checkpoints and bad thermal / IMU / audio inputs get anybind errors naming the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch

import anybind
from anybind.errors import AnybindError, CheckpointError, ConfigError, InputError, InputFileError, UnknownNameError


@pytest.fixture(scope="module")
def partial_checkpoint(ib, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vision-only export of the tiny model."""
    path = tmp_path_factory.mktemp("partial") / "vision_only.pth"
    ib.write_tiny_checkpoint(path, drop=("text", "audio", "depth", "thermal", "imu"))
    return path


def test_a_vision_only_export_loads_and_names_what_is_missing(ib, partial_checkpoint: Path) -> None:
    model = anybind.load(ib.imagebind_spec(partial_checkpoint), device="cpu")
    assert model.anchor.checkpoint_modalities == ["vision"]
    assert model.embed("image", torch.rand(1, 3, 224, 224)).shape == (1, 32)
    with pytest.raises(UnknownNameError, match=r"has no text keys.*holds: vision"):
        model.embed("text", ["a dog"])
    with pytest.raises(UnknownNameError, match=r"has no audio keys.*holds: vision"):
        anybind.load(ib.imagebind_spec(partial_checkpoint, audio=ib.IMAGEBIND_MODALITIES["audio"]), device="cpu")


def _spec(ib: Any, checkpoint: Any, **anchor: Any) -> dict:
    spec = ib.imagebind_spec(checkpoint)
    spec["anchor"].update(anchor)
    return spec


@pytest.mark.parametrize("case, error, words", [
    ("missing file", InputFileError, ["`anchor.checkpoint`", "not found", "never downloads"]),
    ("not imagebind", CheckpointError, ["not in the ImageBind layout", "modality_trunks"]),
    ("pickle", CheckpointError, ["not a readable PyTorch checkpoint"]),
    ("wrong width", CheckpointError, ["vision tower does not match", "shape mismatches (first 4 of",
                                      "modality_preprocessors.vision.cls_token"]),
    ("openclip anchor", ConfigError, ["needs `anchor.kind: imagebind`", "'openclip'"]),
    ("clap preprocess", ConfigError, ["needs an ImageBind preprocess", "long_clips='windows'"]),
])
def test_bad_checkpoints_and_configs(case: str, error: type, words: list[str], ib, tiny_checkpoint,
                                    tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint[0]
    if case == "missing file":
        spec = _spec(ib, str(tmp_path / "nowhere" / "imagebind_huge.pth"))
    elif case == "not imagebind":
        torch.save({"visual.proj": torch.zeros(2)}, tmp_path / "other.pth")
        spec = _spec(ib, tmp_path / "other.pth")
    elif case == "pickle":
        torch.save({"model": object()}, tmp_path / "pickle.pth")
        spec = _spec(ib, tmp_path / "pickle.pth")
    elif case == "wrong width":
        sizes = {"width": 64, "blocks": 2, "heads": 4}
        arch = {"out_dim": 32, **{m: sizes for m in ("text", "audio", "depth", "thermal", "imu")},
                "vision": {"width": 96, "blocks": 2, "heads": 4}}
        spec = _spec(ib, checkpoint, architecture=arch)
    elif case == "openclip anchor":
        spec = {"anchor": {"kind": "openclip", "model": "ViT-B-32", "model_cfg": {
            "embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                                            "patch_size": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}},
            "modalities": {"imu": {"encoder": "imagebind"}}}
    else:
        spec = ib.imagebind_spec(checkpoint, audio={"encoder": "imagebind", "preprocess": "cnn-16k"})
    with pytest.raises(error) as caught:
        anybind.load(spec, device="cpu")
    for word in words:
        assert word in str(caught.value)


def test_the_huge_preset_without_its_file_says_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANYBIND_HOME", str(tmp_path / "home"))
    with pytest.raises(InputFileError) as caught:
        anybind.load("imagebind-huge", device="cpu")
    for word in ("imagebind_huge.pth", str(tmp_path / "home" / "weights"), "CC BY-NC-SA 4.0"):
        assert word in str(caught.value)


def _stereo_rgb(differ: bool) -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 1), dtype=np.uint8).repeat(3, axis=2)
    if differ:
        image[..., 1] = 255 - image[..., 1]
    return image


@pytest.mark.parametrize("modality, make, words", [
    ("imu", lambda tmp: np.zeros((3, 2000), np.float32), ["`inputs[0]`", "expected [6, T]", "(3, 2000)"]),
    ("imu", lambda tmp: np.zeros((2000, 6), np.float32), ["expected [6, T]", "transpose a [T, 6] array"]),
    ("imu", lambda tmp: np.zeros((6, 1500), np.float32), ["expected 2000 samples per axis, got 1500",
                                                          "pad-or-crop"]),
    ("imu", lambda tmp: np.full((6, 2000), np.nan, np.float32), ["finite"]),
    ("imu", lambda tmp: str(tmp / "missing.npy"), ["does not exist"]),
    ("thermal", lambda tmp: _stereo_rgb(differ=True), ["single-channel thermal image", "3 channels that differ"]),
    ("thermal", lambda tmp: np.zeros((2, 3, 8, 8), np.float32), ["expected a [H, W] thermal image"]),
    ("thermal", lambda tmp: np.zeros((8, 8), np.int64), ["uint8, uint16 or float"]),
    ("audio", lambda tmp: np.zeros(200, np.float32), ["200 sample(s) at 16000 Hz", "shorter than one analysis frame",
                                                      "zero-padded"]),
])
def test_bad_inputs_name_what_was_expected(modality: str, make: Any, words: list[str], imagebind_model,
                                           tmp_path: Path) -> None:
    with pytest.raises(AnybindError) as caught:
        imagebind_model.embed(modality, [make(tmp_path)], sample_rate=16000) if modality == "audio" else \
            imagebind_model.embed(modality, [make(tmp_path)])
    assert isinstance(caught.value, InputError)
    for word in words:
        assert word in str(caught.value)


def test_documented_fallbacks(ib, imagebind_model, tiny_checkpoint, tmp_path: Path) -> None:
    gray_as_rgb = _stereo_rgb(differ=False)
    assert torch.allclose(imagebind_model.embed("thermal", [gray_as_rgb]),
                          imagebind_model.embed("thermal", [gray_as_rgb[..., 0]]))
    soundfile.write(tmp_path / "short.wav", np.zeros(4000, np.float32) + 0.1, 16000)  # 0.25 s: log-mel zero-padded
    assert imagebind_model.embed("audio", [str(tmp_path / "short.wav")]).shape == (1, 32)
    padded = anybind.load(ib.imagebind_spec(tiny_checkpoint[0], imu={
        "encoder": "imagebind", "preprocess": {"channels": 6, "length": 2000, "length_policy": "pad-or-crop"}}),
        device="cpu")
    short, long = np.ones((6, 1500), np.float32), np.ones((6, 2600), np.float32)
    assert padded.embed("imu", [short, long]).shape == (2, 32)
