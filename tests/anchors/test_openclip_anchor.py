"""Parity of the openclip anchor with open_clip itself, for every weight source, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

import anybind
from anybind.errors import CheckpointError, ConfigError, InputFileError, UnknownNameError

TINY_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
CAPTIONS = ["a dog barking", "rain on a roof", "a red cube"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (48 + 16 * i, 80, 3), dtype=np.uint8)) for i in range(3)]


def _reference(clip: torch.nn.Module, preprocess, images, captions, model_name="ViT-B-32"):
    """open_clip's own path: its eval transform, encode_image/encode_text, L2 normalize."""
    clip.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    with torch.no_grad():
        image = F.normalize(clip.encode_image(torch.stack([preprocess(im) for im in images])), dim=-1)
        text = F.normalize(clip.encode_text(tokenizer(captions)), dim=-1)
    return image, text


def _model_config(**anchor) -> dict:
    return {"format": "anybind.model", "version": 1, "anchor": {"kind": "openclip", **anchor}}


def test_tag_free_config_matches_open_clip(tiny_model: anybind.BoundModel) -> None:
    clip, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", **TINY_CFG)
    clip.load_state_dict(tiny_model.anchor.model.state_dict())
    image_ref, text_ref = _reference(clip, preprocess, _images(), CAPTIONS)
    assert (tiny_model.embed("image", _images()) - image_ref).abs().max() <= 1e-5
    assert (tiny_model.embed("text", CAPTIONS) - text_ref).abs().max() <= 1e-5


def test_checkpoint_file_matches_open_clip(tmp_path: Path) -> None:
    torch.manual_seed(123)
    clip, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", **TINY_CFG)
    checkpoint = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}}, checkpoint)
    model = anybind.load(_model_config(model="ViT-B-32", model_cfg=TINY_CFG, pretrained=str(checkpoint)), device="cpu")
    image_ref, text_ref = _reference(clip, preprocess, _images(), CAPTIONS)
    assert (model.embed("image", _images()) - image_ref).abs().max() <= 1e-5
    assert (model.embed("text", CAPTIONS) - text_ref).abs().max() <= 1e-5
    assert model.anchor.identity.tag == "epoch_1.pt"
    assert model.anchor.identity.weights_sha256 == anybind.anchor.sha256_file(checkpoint)


def test_local_dir_matches_open_clip_and_keeps_its_preprocessing(tmp_path: Path) -> None:
    torch.manual_seed(7)
    clip = open_clip.create_model("ViT-B-32", **TINY_CFG)
    folder = tmp_path / "my-clip"
    folder.mkdir()
    model_cfg = json.loads(json.dumps(open_clip.get_model_config("ViT-B-32")))
    model_cfg.update(TINY_CFG)
    preprocess_cfg = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}))
    save_file(clip.state_dict(), str(folder / "open_clip_model.safetensors"))

    reference, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    model = anybind.load(_model_config(model=f"local-dir:{folder}"), device="cpu")
    assert model.anchor.image_preprocess.mean == (0.5, 0.5, 0.5)
    assert model.anchor.image_preprocess.interpolation == "bilinear"
    image_ref, text_ref = _reference(reference, preprocess, _images(), CAPTIONS)
    assert (model.embed("image", _images()) - image_ref).abs().max() <= 1e-5
    assert (model.embed("text", CAPTIONS) - text_ref).abs().max() <= 1e-5


def test_identity_is_stable_and_seed_dependent() -> None:
    spec = _model_config(model="ViT-B-32", model_cfg=TINY_CFG, name="t", seed=1)
    first, second = anybind.load(spec, device="cpu"), anybind.load(spec, device="cpu")
    other = anybind.load({**spec, "anchor": {**spec["anchor"], "seed": 2}}, device="cpu")
    assert first.anchor_key == second.anchor_key != other.anchor_key
    assert torch.equal(first.embed("text", ["x"]), second.embed("text", ["x"]))


def test_anchor_is_frozen(tiny_model: anybind.BoundModel) -> None:
    tiny_model.train()
    assert not tiny_model.anchor.training
    assert not any(p.requires_grad for p in tiny_model.anchor.parameters())


def test_quickgelu_mismatch_is_refused_before_download() -> None:
    # The tag was trained with QuickGELU; the plain config lacks it. No weights are needed to say so.
    with pytest.raises(ConfigError, match=r"quick_gelu=True.*'ViT-B-32-quickgelu'"):
        anybind.load(_model_config(model="ViT-B-32", pretrained="openai"), device="cpu")


def test_quickgelu_mismatch_can_be_downgraded_to_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args, **kwargs):
        raise RuntimeError("offline")

    monkeypatch.setattr(open_clip, "create_model", no_download)
    with pytest.warns(UserWarning, match="quick_gelu"), pytest.raises(InputFileError, match="could not be downloaded"):
        anybind.load(_model_config(model="ViT-B-32", pretrained="openai", quickgelu="warn"), device="cpu")


@pytest.mark.parametrize(
    ("anchor", "error", "message"),
    [
        ({"model": "ViT-B-99"}, UnknownNameError, r"unknown open_clip model config 'ViT-B-99'; did you mean 'ViT-B-32'"),
        ({"model": "ViT-B-32", "pretrained": "laion2b_s34b_b7"}, UnknownNameError,
         r"unknown open_clip pretrained tag for ViT-B-32 'laion2b_s34b_b7'; did you mean 'laion2b_s34b_b79k'"),
        ({"model": "ViT-B-32", "pretrained": "/no/such/ckpt.pt"}, InputFileError,
         r"`anchor.pretrained`: checkpoint file '/no/such/ckpt.pt' does not exist"),
        ({"model": "local-dir:/no/such/folder"}, InputFileError, r"has no open_clip_config.json"),
        ({"model": "ViT-B-32", "pretraned": "x"}, ConfigError, r"unknown key\(s\) 'pretraned' \(did you mean 'pretrained'\?\)"),
        ({"model": "ViT-B-32", "seed": "zero"}, ConfigError, r"`seed`: expected int, got str 'zero'"),
    ],
)
def test_bad_anchor_configs(anchor: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        anybind.load(_model_config(**anchor), device="cpu")


def test_checkpoint_that_does_not_match_the_config_names_keys(tmp_path: Path) -> None:
    clip = open_clip.create_model("ViT-B-32", **TINY_CFG)
    state = clip.state_dict()
    state.pop("visual.proj")
    state["visual.extra_head.weight"] = torch.zeros(2)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing keys \['visual.proj'\].*unexpected keys \['visual.extra_head.weight'\]"):
        anybind.load(_model_config(model="ViT-B-32", model_cfg=TINY_CFG, pretrained=str(path)), device="cpu")


def test_checkpoint_with_wrong_shapes_names_them(tmp_path: Path) -> None:
    wider = {**TINY_CFG, "embed_dim": 32}
    path = tmp_path / "wider.pt"
    torch.save(open_clip.create_model("ViT-B-32", **wider).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"does not match the anchor config: shape mismatches \(first \d+ of \d+\): \S+: checkpoint \("):
        anybind.load(_model_config(model="ViT-B-32", model_cfg=TINY_CFG, pretrained=str(path)), device="cpu")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": Path("/")}}, path)
    with pytest.raises(CheckpointError, match="could not be"):
        anybind.load(_model_config(model="ViT-B-32", model_cfg=TINY_CFG, pretrained=str(path)), device="cpu")
