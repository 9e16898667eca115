"""Official-format LAION-CLAP checkpoints: layout detection, strict loading, mismatches, conversion."""

from __future__ import annotations

import json
import pickle
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import anybind
from anybind.cli import main as cli_main
from anybind.config import load_named
from anybind.errors import CheckpointError, InputFileError
from anybind.modalities.audio.clap_checkpoint import (
    CONVERTED_INFO,
    CONVERTED_WEIGHTS,
    convert_clap_checkpoint,
    detect_layout,
    load_clap_audio_state,
    read_clap_audio_state,
)
from anybind.modalities.audio.htsat import HTSATConfig, HTSATEncoder
from anybind.modalities.audio.loader import load_audio_batch
from anybind.modalities.audio.preprocess import AudioPreprocess
from anybind.modality import EncoderContext


def test_official_checkpoint_layout_is_detected(clap_reference) -> None:
    state, layout = read_clap_audio_state(clap_reference.checkpoint)
    assert (layout.size, layout.embed_dim, layout.depths, layout.num_heads) == ("tiny", 96, (2, 2, 6, 2), (4, 8, 16, 32))
    assert (layout.clap_dim, layout.fusion) == (512, None)
    assert all(k.startswith(("audio_branch.", "audio_projection.")) for k in state)
    assert "audio_projection.2.weight" in state and not any("text" in k for k in state)


def test_loaded_weights_equal_the_checkpoint(clap_reference, clap_model) -> None:
    ours = clap_model.encoder("audio").state_dict()
    theirs = clap_reference.model.state_dict()
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key


def test_wrong_architecture_names_the_mismatch(clap_reference, model_config_for) -> None:
    audio = {"encoder": "htsat", "encoder_args": {"clap_checkpoint": str(clap_reference.checkpoint),
                                                  "architecture": "htsat-base"}}
    with pytest.raises(CheckpointError, match=r"holds HTSAT-tiny \(embed_dim 96, depths \(2, 2, 6, 2\).* but the "
                                              r"encoder is htsat-base \(embed_dim 128, depths \(2, 2, 12, 2\)"):
        anybind.load(model_config_for(audio), device="cpu")


def test_wrong_fusion_names_the_mismatch(clap_reference, model_config_for) -> None:
    audio = {"encoder": "htsat", "preprocess": "clap-48k-fusion",
             "encoder_args": {"clap_checkpoint": str(clap_reference.checkpoint), "fusion": "aff_2d"}}
    with pytest.raises(CheckpointError, match=r"no fusion but the encoder is htsat-tiny .* fusion 'aff_2d'"):
        anybind.load(model_config_for(audio), device="cpu")


def test_missing_and_unexpected_keys_are_named(clap_reference, clap_model) -> None:
    state, _ = read_clap_audio_state(clap_reference.checkpoint)
    state = dict(state)
    del state["audio_branch.norm.weight"]
    state["audio_branch.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing keys \['audio_branch\.norm\.weight'\], unexpected keys "
                                              r"\['audio_branch\.extra\.weight'\]"):
        load_clap_audio_state(clap_model.encoder("audio"), state, "edited.pt")


class _NotAllowed:
    pass


BAD_CHECKPOINTS = [
    ("missing", lambda t: t / "none.pt", InputFileError, r"`encoder_args\.clap_checkpoint`: CLAP checkpoint .*none\.pt.* does not exist"),
    ("garbage", lambda t: (t / "g.pt").write_bytes(b"\x00garbage" * 10) and t / "g.pt", CheckpointError,
     r"could not be read as a torch checkpoint with weights_only=True"),
    ("arbitrary pickle", lambda t: (t / "p.pt").write_bytes(pickle.dumps(_NotAllowed())) and t / "p.pt",
     CheckpointError, r"could not be read as a torch checkpoint with weights_only=True"),
    ("no audio keys", lambda t: torch.save({"state_dict": {"module.text_branch.w": torch.zeros(2)}}, t / "t.pt") or t / "t.pt",
     CheckpointError, r"has no `audio_branch\.`/`audio_projection\.` tensors; is it a LAION-CLAP checkpoint\? "
                      r"\(first keys: module\.text_branch\.w\)"),
    ("PANN audio branch", lambda t: torch.save({"module.audio_branch.conv_block1.conv1.weight": torch.zeros(2)},
                                               t / "pann.pt") or t / "pann.pt",
     CheckpointError, r"not an HTSAT audio branch"),
]


@pytest.mark.parametrize(("make", "error", "message"), [c[1:] for c in BAD_CHECKPOINTS], ids=[c[0] for c in BAD_CHECKPOINTS])
def test_bad_checkpoint_files(tmp_path: Path, make: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        read_clap_audio_state(make(tmp_path))


def test_unknown_size_is_named(clap_reference) -> None:
    state, _ = read_clap_audio_state(clap_reference.checkpoint)
    state = {k: v for k, v in state.items() if not k.startswith("audio_branch.layers.2.blocks.5.")}
    with pytest.raises(CheckpointError, match=r"depths \(2, 2, 5, 2\) matches none of the known sizes"):
        detect_layout(state, "cut.pt")


def test_converter_writes_an_audio_only_bundle(clap_reference, tmp_path: Path, capsys) -> None:
    info = convert_clap_checkpoint(clap_reference.checkpoint, tmp_path / "bundle")
    weights = load_file(str(tmp_path / "bundle" / CONVERTED_WEIGHTS))
    state, layout = read_clap_audio_state(clap_reference.checkpoint)
    assert sorted(weights) == sorted(state)
    assert all(torch.equal(weights[k], state[k]) for k in state)
    assert json.loads((tmp_path / "bundle" / CONVERTED_INFO).read_text()) == info
    assert info["modality_entry"]["encoder_args"]["architecture"] == "htsat-tiny"
    assert read_clap_audio_state(tmp_path / "bundle" / CONVERTED_WEIGHTS)[1] == layout
    assert not list((tmp_path / "bundle").glob("*.tmp"))

    # The command on a small file with the tiny layout (the converter reads shapes, not values).
    small = {f"module.{k}": torch.zeros(v.shape) for k, v in state.items()
             if k.startswith("audio_branch.patch_embed.") or k.endswith("relative_position_bias_table")}
    small["module.audio_projection.2.weight"] = torch.zeros(512, 4)
    torch.save({"state_dict": small}, tmp_path / "small.pt")
    assert cli_main(["convert-clap", str(tmp_path / "small.pt"), str(tmp_path / "cli"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["layout"]["size"] == "tiny" and (tmp_path / "cli" / CONVERTED_WEIGHTS).is_file()
    assert cli_main(["convert-clap", str(tmp_path / "missing.pt"), str(tmp_path / "cli2")]) == 2


def test_fusion_checkpoint_round_trip(tmp_path: Path) -> None:
    preprocess = load_named(AudioPreprocess, "preprocess/audio", "clap-48k-fusion", "test")
    context = EncoderContext(anchor=types.SimpleNamespace(dim=16), preprocess=preprocess)  # type: ignore[arg-type]
    torch.manual_seed(0)
    encoder = HTSATEncoder(HTSATConfig(fusion="aff_2d"), context).eval()
    official = {"state_dict": {f"module.{k}": v for k, v in encoder.state_dict().items() if not k.startswith("head.")}}
    torch.save(official, tmp_path / "630k-fusion-test.pt")
    state, layout = read_clap_audio_state(tmp_path / "630k-fusion-test.pt")
    assert (layout.size, layout.fusion) == ("tiny", "aff_2d")
    load_clap_audio_state(encoder, state, "630k-fusion-test.pt")
    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal(48000 * 3) * 0.1).astype(np.float32), (rng.standard_normal(48000 * 12) * 0.1).astype(np.float32)]
    batch = load_audio_batch(clips, preprocess, sample_rate=48000)
    assert batch["longer"].tolist() == [False, True]
    long_only = {key: value[1:] for key, value in batch.items()}  # the fusion branch (CLAP's own forward)
    with torch.inference_mode():
        out = encoder(long_only)
    assert out.shape == (1, 16) and torch.isfinite(out).all()
