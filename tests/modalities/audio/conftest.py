"""Fixtures of the audio tests: tiny model configs, a random-init LAION-CLAP model and its checkpoint."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from anybind.config import configs_dir

CLAP_AUDIO_CFG = dict(audio_length=1024, clip_samples=480000, mel_bins=64, sample_rate=48000, window_size=1024,
                      hop_size=480, fmin=50, fmax=14000, class_num=527, model_type="HTSAT", model_name="tiny")
TINY_TEXT_CFG = dict(context_length=77, vocab_size=16, width=8, heads=1, layers=1, model_type="transformer")


def tiny_model_config(audio: dict[str, Any] | None = None, anchor_dim: int | None = None) -> dict[str, Any]:
    """The tiny preset's anchor with only an audio entry (default: the preset's own audio entry)."""
    data = yaml.safe_load((configs_dir() / "presets" / "tiny.yaml").read_text())
    data["modalities"] = {"audio": audio if audio is not None else data["modalities"]["audio"]}
    if anchor_dim is not None:
        data["anchor"] = copy.deepcopy(data["anchor"])
        data["anchor"]["model_cfg"]["embed_dim"] = anchor_dim
    return data


@dataclass
class ClapReference:
    """laion_clap's own CLAP model (tiny text side), its preprocessing functions and an official checkpoint."""

    model: torch.nn.Module
    functions: dict[str, Any]
    checkpoint: Path
    audio_cfg: dict[str, Any]

    def embed(self, clips: list[Any], truncating: str = "rand_trunc") -> torch.Tensor:
        """laion_clap's audio path: int16 round trip, get_audio_features, audio branch + projection."""
        f = self.functions
        inputs = []
        for clip in clips:
            waveform = torch.from_numpy(f["int16_to_float32"](f["float32_to_int16"](clip))).float()
            inputs.append(f["get_audio_features"]({}, waveform, 480000, truncating, "repeatpad", self.audio_cfg))
        with torch.no_grad():
            return self.model.get_audio_embedding(inputs)


def write_official_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Save `model` as LAION-CLAP's training script does: ``{"state_dict": {"module.<key>": ...}}``."""
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    torch.save({"epoch": 1, "name": "test", "state_dict": state}, path)
    return path


@pytest.fixture(scope="session")
def clap_reference(tmp_path_factory: pytest.TempPathFactory) -> ClapReference:
    """A seeded random-init laion_clap CLAP (HTSAT-tiny audio) with non-trivial batch-norm statistics."""
    from anybind.modalities.audio.laion_source import clap_data_functions, import_clap_module

    torch.set_num_threads(2)
    clap_model = import_clap_module("model")
    state = torch.random.get_rng_state()
    torch.manual_seed(1234)
    model = clap_model.CLAP(embed_dim=768, audio_cfg=CLAP_AUDIO_CFG, text_cfg=TINY_TEXT_CFG).eval()
    with torch.no_grad():
        model.audio_branch.bn0.running_mean.normal_(0.0, 5.0)
        model.audio_branch.bn0.running_var.uniform_(10.0, 50.0)
    torch.random.set_rng_state(state)
    checkpoint = write_official_checkpoint(model, tmp_path_factory.mktemp("clap") / "630k-test.pt")
    return ClapReference(model=model, functions=clap_data_functions(), checkpoint=checkpoint,
                         audio_cfg=dict(CLAP_AUDIO_CFG))


@pytest.fixture(scope="session")
def clap_model(clap_reference: ClapReference) -> Any:
    """anybind model whose audio encoder is htsat loaded from the official-format checkpoint, CLAP output."""
    import anybind

    audio = {"encoder": "htsat", "preprocess": "clap-48k",
             "encoder_args": {"clap_checkpoint": str(clap_reference.checkpoint), "output": "clap"}}
    return anybind.load(tiny_model_config(audio, anchor_dim=512), device="cpu")


@pytest.fixture(scope="session")
def audio_model() -> Any:
    """The tiny anchor with only the tiny preset's CNN audio encoder."""
    import anybind

    return anybind.load(tiny_model_config(), device="cpu")


@pytest.fixture(scope="session")
def model_config_for() -> Any:
    """`tiny_model_config`, for tests that build their own model configs."""
    return tiny_model_config
