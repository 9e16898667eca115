"""Parity of anybind's ImageBind modules with the reference code on a tiny random-init model.

The reference builds the model and writes its state dict in the official layout; anybind loads
that file and every modality's unit-norm output must match the reference's within 1e-5,
preprocessing included for images, text and audio (from WAV files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F
from PIL import Image

TOLERANCE = 1e-5


def reference_outputs(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {k: F.normalize(v, dim=-1) for k, v in model(inputs).items()}


def max_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours.as_subclass(torch.Tensor) - theirs).abs().max())


def test_image_and_text_match_the_reference_with_its_preprocessing(reference, tiny_checkpoint, imagebind_model,
                                                                   tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = []
    for index, size in enumerate([(300, 240), (224, 400)]):
        path = tmp_path / f"image{index}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        images.append(str(path))
    texts = ["a dog barking", "rain on a tin roof at night", " ".join(["long"] * 100)]
    expected = reference_outputs(tiny_checkpoint[1], {
        "vision": reference.data.load_and_transform_vision_data(images, "cpu"),
        "text": reference.data.load_and_transform_text(texts, "cpu")})
    assert max_diff(imagebind_model.embed("image", images), expected["vision"]) <= TOLERANCE
    assert max_diff(imagebind_model.embed("text", texts), expected["text"]) <= TOLERANCE


@pytest.mark.parametrize("seconds, rate, channels", [
    (5.3, 44100, 2),   # resampled, stereo (the reference reads channel 0), 3 overlapping clips
    (7.0, 16000, 1),   # 3 clips spread over (duration - 2 s), not reaching the end
    (1.2, 16000, 1),   # shorter than one clip: 3 copies of the whole clip, log-mel zero-padded
])
def test_audio_from_wav_matches_the_reference(reference, tiny_checkpoint, imagebind_model, tmp_path: Path,
                                              seconds: float, rate: int, channels: int) -> None:
    rng = np.random.default_rng(1)
    paths = []
    for index in range(2):
        t = np.arange(int(seconds * rate)) / rate
        tone = 0.3 * np.sin(2 * np.pi * (300 + 200 * index) * t)[:, None] + 0.05 * rng.normal(size=(t.size, channels))
        path = tmp_path / f"sound{index}.wav"
        soundfile.write(path, (tone + 0.01).astype(np.float32), rate, subtype="PCM_16")  # with a DC offset
        paths.append(str(path))
    expected = reference_outputs(tiny_checkpoint[1], {
        "audio": reference.data.load_and_transform_audio_data(paths, "cpu")})["audio"]
    assert max_diff(imagebind_model.embed("audio", paths), expected) <= TOLERANCE


def test_depth_follows_the_paper_recipe_and_matches_the_reference(tiny_checkpoint, imagebind_model) -> None:
    rng = np.random.default_rng(2)
    depth = rng.uniform(0.3, 8.0, (2, 224, 224))
    depth[0, :20, :30] = 0.0  # missing measurements: clipped to 0.01 m like the paper's recipe
    disparity = 0.075 * 518.86 / np.clip(depth, 0.01, 50.0)  # the default Kinect camera of the preset
    expected = reference_outputs(tiny_checkpoint[1], {"depth": torch.from_numpy(disparity).float()[:, None]})
    assert max_diff(imagebind_model.embed("depth", depth), expected["depth"]) <= TOLERANCE


def test_thermal_and_imu_match_the_reference(tiny_checkpoint, imagebind_model) -> None:
    rng = np.random.default_rng(3)
    thermal = rng.integers(0, 256, (2, 224, 224), dtype=np.uint8)
    imu = rng.normal(size=(2, 6, 2000)).astype(np.float32)
    expected = reference_outputs(tiny_checkpoint[1], {
        "thermal": torch.from_numpy(thermal.astype(np.float32) / 255.0)[:, None], "imu": torch.from_numpy(imu)})
    assert max_diff(imagebind_model.embed("thermal", thermal), expected["thermal"]) <= TOLERANCE
    assert max_diff(imagebind_model.embed("imu", imu), expected["imu"]) <= TOLERANCE


def test_logit_scales_are_data_not_in_the_vectors(tiny_checkpoint, imagebind_model) -> None:
    reference_state = tiny_checkpoint[1].state_dict()
    text_scale = float(reference_state["modality_postprocessors.text.1.log_logit_scale"].exp())
    assert imagebind_model.anchor.logit_scale == pytest.approx(text_scale)
    for modality, scale in {"audio": 20.0, "depth": 5.0, "thermal": 10.0, "imu": 5.0}.items():
        assert imagebind_model.logit_scale(modality) == pytest.approx(scale)
        assert imagebind_model.anchor.modality_logit_scale(modality) == pytest.approx(scale, rel=1e-5)
    vectors = imagebind_model.embed("imu", np.zeros((1, 6, 2000), dtype=np.float32))
    assert float(vectors.norm()) == pytest.approx(1.0, abs=1e-5)


def test_vision_stem_folding_equals_the_two_frame_conv3d(tiny_checkpoint, imagebind_model) -> None:
    from anybind.anchors.imagebind.architecture import fold_video_stem

    weight = tiny_checkpoint[1].state_dict()["modality_preprocessors.vision.rgbt_stem.proj.1.weight"]
    pixels = torch.randn(1, 3, 28, 28)
    video = pixels[:, :, None].repeat(1, 1, 2, 1, 1)
    conv3d = F.conv3d(video, weight, stride=(2, 14, 14))[:, :, 0]
    assert torch.allclose(F.conv2d(pixels, fold_video_stem(weight), stride=14), conv3d, atol=1e-5)


def test_the_huge_config_maps_onto_every_key_of_the_official_checkpoint() -> None:
    """imagebind_huge.pth has 1,311 keys: our towers (built on the meta device, no memory) name
    1,305 of them, plus the text causal mask and five postprocessor logit scales."""
    from anybind.anchors.imagebind.architecture import ImageBindArchitecture, PatchTower, TextTower
    from anybind.anchors.imagebind.checkpoint import MODALITIES, key_renames
    from anybind.config import load_named

    arch = load_named(ImageBindArchitecture, "anchors/imagebind", "huge", "huge")
    official = set()
    with torch.device("meta"):
        for modality in MODALITIES:
            tower = TextTower(arch) if modality == "text" else PatchTower(modality, arch)
            for key in tower.state_dict():
                prefix = next(official for official, ours in key_renames(modality) if key.startswith(ours))
                ours = next(ours for official, ours in key_renames(modality) if key.startswith(ours))
                official.add(prefix + key[len(ours):])
    assert len(official) + 1 + 5 == 1311
    assert "modality_heads.imu.3.weight" in official and "modality_trunks.vision.pre_transformer_layer.0.weight" in official
