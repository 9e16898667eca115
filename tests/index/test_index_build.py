"""`Index.build` / `add_inputs` with the tiny model, any-to-any `model.search`, and the optional faiss import."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch

from anybind import AnchorMismatchError, Index
from anybind.errors import MissingDependencyError

IMAGES = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
TEXTS = ["a dog barking", "rain on a roof", "a red car"]


def test_build_and_any_to_any_search(tiny_model: Any) -> None:
    index = Index.build(tiny_model, {"image": IMAGES, "text": TEXTS}, batch_size=2, progress=False)
    assert len(index) == 6 and index.modality_counts() == {"image": 3, "text": 3}
    assert index.anchor_key == tiny_model.anchor_key and index.dim == tiny_model.dim
    assert index.metadata(3) == {"id": 3, "modality": "text", "source": "a dog barking"}
    result = tiny_model.search("rain on a roof", "text", index, k=2, modality="text")
    assert result.hits(0)[0].metadata["source"] == "rain on a roof"
    assert result.scores[0, 0] == pytest.approx(1.0, abs=1e-4)
    by_image = tiny_model.search(IMAGES[2], "image", index, k=1, modality=["image"])
    assert by_image.ids == [[2]]


def test_add_inputs_checks_the_anchor(tiny_model: Any) -> None:
    index = Index("some:other:anchor", tiny_model.dim)
    with pytest.raises(AnchorMismatchError, match=r"`model` has anchor openclip:tiny.* this index holds anchor some:"):
        index.add_inputs(tiny_model, {"text": TEXTS})


def test_missing_faiss_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    index = Index("k", 4, backend="faiss")
    index.add(torch.eye(4), modality="x")
    with pytest.raises(MissingDependencyError, match=r"pip install anybind\[faiss\]"):
        index.search(torch.eye(4)[:1], k=1)
