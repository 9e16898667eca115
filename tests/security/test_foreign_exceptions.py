"""Inputs that used to escape as foreign exceptions or misleading messages: (input, anybind error, words)."""

from __future__ import annotations

import argparse
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F
from PIL import Image

import anybind
from anybind.cli.run_options import apply_run_overrides
from anybind.errors import CheckpointError, ConfigError, InputError, InputFileError
from anybind.index import Index
from anybind.model import resolve_device
from anybind.train.config import parse_bind_config
from anybind.train.manifest import read_manifest_rows
from anybind.zero_shot import resolve_templates

RECIPE: dict[str, Any] = {"modality": "audio", "model": "tiny", "output_dir": "runs/a",
                          "data": {"manifest": "pairs.csv"}, "train": {"steps": 10}}


def _recipe(**train: Any) -> Callable[[Path], Any]:
    return lambda t: parse_bind_config({**RECIPE, "train": {"steps": 10, **train}})


def _index() -> Index:
    index = Index("test:anchor", 4)
    index.add(F.normalize(torch.randn(2, 4), dim=1), ids=[0, "x"], modality="image")
    return index


def _overrides(**values: Any) -> Callable[[Path], Any]:
    def run(tmp: Path) -> Any:
        recipe = parse_bind_config(RECIPE)
        args = argparse.Namespace(**{"device": None, "batch_size": None, "steps": None, "stop_after": None,
                                     "manifest": None, "val_manifest": None, "output_dir": None, **values})
        return apply_run_overrides(recipe, args)
    return run


def _csv(tmp: Path) -> Any:
    path = tmp / "pairs.csv"
    path.write_text("audio,image,audio\na.wav,a.png,b.wav\n")
    return read_manifest_rows(path)


class _Payload:
    def __reduce__(self) -> Any:
        return (os.system, ("true",))


def _clap(content: Callable[[Path], None]) -> Callable[[Path], Any]:
    def run(tmp: Path) -> Any:
        from anybind.modalities.audio.clap_checkpoint import convert_clap_checkpoint

        path = tmp / "model.pt"
        content(path)
        return convert_clap_checkpoint(path, tmp / "out")
    return run


CUDA = torch.cuda.is_available()

CASES: list[tuple[str, Callable[[Path], Any], type[Exception], list[str]]] = [
    ("device gpu9", lambda t: resolve_device("gpu9"), InputError, ["`device`", "'gpu9'", "'cpu', 'cuda'"]),
    ("device not a string", lambda t: resolve_device(3), InputError, ["`device`", "got 3"]),
    ("device cuda:7", lambda t: resolve_device("cuda:7"), InputError,
     ["`device`", "'cuda:7'", "this machine has" if CUDA else "CUDA is not available"]),
    ("load on gpu9", lambda t: anybind.load("tiny", device="gpu9"), InputError, ["`device`", "'gpu9'"]),
    ("template with a named field", lambda t: resolve_templates(None, "image", ["a {} of {x}"]), InputError,
     ["`templates[0]`", "no other fields", "'a {} of {x}'"]),
    ("template with an index", lambda t: resolve_templates(None, "image", ["a {0} photo"]), InputError,
     ["`templates[0]`", "exactly one '{}'"]),
    ("template with a stray brace", lambda t: resolve_templates(None, "image", ["a {} photo }"]), InputError,
     ["`templates[0]`", "'{{' or '}}'"]),
    ("remove None", lambda t: _index().remove(None), InputError, ["`ids`", "got None"]),
    ("remove a list of lists", lambda t: _index().remove([[0]]), InputError, ["`ids`", "ints or strings", "[0]"]),
    ("remove True", lambda t: _index().remove(True), InputError, ["`ids`"]),
    ("lr nan", _recipe(lr=float("nan")), ConfigError, ["`train.lr`", "must be > 0, got nan"]),
    ("lr inf", _recipe(lr=float("inf")), ConfigError, ["`train.lr`", "inf"]),
    ("betas above 1", _recipe(betas=[0.9, 1.5]), ConfigError, ["`train.betas`", "[0, 1)", "1.5"]),
    ("negative weight decay", _recipe(weight_decay=-0.1), ConfigError, ["`train.weight_decay`", ">= 0", "-0.1"]),
    ("eps zero", _recipe(eps=0), ConfigError, ["`train.eps`", "> 0"]),
    ("grad clip nan", _recipe(grad_clip=float("nan")), ConfigError, ["`train.grad_clip`"]),
    ("--steps -5", _overrides(steps=-5), InputError, ["`--steps`", "positive integer", "-5"]),
    ("--batch-size 0", _overrides(batch_size=0), InputError, ["`--batch-size`", "got 0"]),
    ("--stop-after -1", _overrides(stop_after=-1), InputError, ["`--stop-after`"]),
    ("CSV duplicated column", _csv, InputFileError, ["pairs.csv", "'audio'", "more than once"]),
    ("empty CLAP checkpoint", _clap(lambda p: p.write_bytes(b"")), CheckpointError, ["model.pt", "empty"]),
    ("PNG as CLAP checkpoint", _clap(lambda p: Image.new("RGB", (4, 4)).save(p, format="PNG")), CheckpointError,
     ["model.pt", "not a plain tensor checkpoint", "never unpickles"]),
    ("hostile pickle as CLAP checkpoint", _clap(lambda p: p.write_bytes(pickle.dumps(_Payload()))), CheckpointError,
     ["model.pt", "refused its contents"]),
]


@pytest.mark.parametrize(("make", "error", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_former_foreign_exception_table(tmp_path: Path, make: Callable[[Path], Any], error: type[Exception],
                                        words: list[str]) -> None:
    with pytest.raises(error) as caught:
        make(tmp_path)
    message = str(caught.value)
    for word in words:
        assert word in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message


def test_templates_with_escaped_braces_are_fine() -> None:
    assert resolve_templates(None, "image", ["a {{literal}} {}"]) == ["a {{literal}} {}"]


def test_a_65_channel_wav_file_is_mixed_down_not_told_to_transpose(tmp_path: Path) -> None:
    from anybind.modalities.audio.loader import load_audio_batch
    from anybind.modalities.audio.preprocess import AudioPreprocess

    path = tmp_path / "many.wav"
    soundfile.write(path, np.full((1600, 65), 0.25, np.float32), 16000, subtype="FLOAT")
    preprocess = AudioPreprocess(sample_rate=16000, clip_seconds=0.1, mel_bins=8, window_size=64, hop_size=32,
                                 fmin=0, fmax=8000)
    batch = load_audio_batch([path], preprocess)
    assert batch["waveform"].shape == (1, 1600) and torch.allclose(batch["waveform"], torch.tensor(0.25))
